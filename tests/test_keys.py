"""Legacy rows, re-encryption under a new key, and the least-privilege policy (moto)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from helpers import KEY_ALIAS, CallCounter

from cloudchain import CloudChain, CloudChainConfigError, IntegrityError
from cloudchain.store import SecretStore

LEGACY = {"row": None, "0.x": {"string": "string"}, "none": {}}


def put_legacy_row(kms: Any, dynamodb: Any, service: str, user: str, kind: str, value: str) -> None:
    """Write a row as cloudchain 0.x ("0.x"), the bare recipe ("none") or the reference ("row")."""
    context = LEGACY[kind] if kind != "row" else {"Service": service, "Username": user}
    blob = kms.encrypt(KeyId=KEY_ALIAS, Plaintext=value.encode(), EncryptionContext=context)
    item = {
        "Service": {"S": service},
        "Username": {"S": user},
        "Secret": {"S": base64.b64encode(blob["CiphertextBlob"]).decode()},
    }
    dynamodb.put_item(TableName="safedb", Item=item)


@pytest.fixture
def legacy(chain: CloudChain, kms: Any, dynamodb: Any) -> CloudChain:
    for kind in LEGACY:
        put_legacy_row(kms, dynamodb, "old", kind, kind, f"value of {kind}")
    chain.save("new", "u", "current")
    return chain


def test_all_three_legacy_contexts_read(legacy: CloudChain) -> None:
    assert [legacy.read("old", kind) for kind in LEGACY] == [f"value of {k}" for k in LEGACY]


def test_list_marks_legacy_rows(legacy: CloudChain) -> None:
    assert {(e.service, e.user): e.legacy for e in legacy.list()} == {
        ("new", "u"): False,
        ("old", "0.x"): True,
        ("old", "none"): True,
        ("old", "row"): True,
    }


def test_the_working_legacy_context_is_remembered(
    chain: CloudChain, kms: Any, dynamodb: Any
) -> None:
    for n in range(5):
        put_legacy_row(kms, dynamodb, "old", f"u{n}", "0.x", f"v{n}")
    reader = CloudChain()
    calls = CallCounter(reader._kms)
    assert [reader.read("old", f"u{n}") for n in range(5)] == [f"v{n}" for n in range(5)]
    # The first row tries the row context, then 0.x; every later row goes straight to 0.x.
    assert calls.count("Decrypt") == 6


def test_a_secret_that_fails_every_context_is_an_integrity_error(
    chain: CloudChain, kms: Any, dynamodb: Any
) -> None:
    put_legacy_row(kms, dynamodb, "old", "u", "0.x", "v")
    item = dynamodb.get_item(
        TableName="safedb", Key={"Service": {"S": "old"}, "Username": {"S": "u"}}
    )["Item"]
    item["Username"] = {"S": "moved"}
    blob = kms.encrypt(KeyId=KEY_ALIAS, Plaintext=b"v", EncryptionContext={"other": "ctx"})
    item["Secret"] = {"S": base64.b64encode(blob["CiphertextBlob"]).decode()}
    dynamodb.put_item(TableName="safedb", Item=item)
    with pytest.raises(IntegrityError, match="no known context"):
        chain.read("old", "moved")


def _key_of(kms: Any, item_secret: dict[str, Any], context: dict[str, str]) -> str:
    blob = base64.b64decode(item_secret["S"])
    return str(kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["KeyId"])


def test_reencrypt_moves_every_version_to_the_new_key(
    chain: CloudChain, kms: Any, dynamodb: Any
) -> None:
    for value in ("v1", "v2", "x" * 5000, b"\x00binary"):
        chain.save("svc", "u", value)
    new_arn = (
        CloudChain(keyalias="alias/new").setup(create_key=True)
        and kms.describe_key(KeyId="alias/new")["KeyMetadata"]["Arn"]
    )
    moved = CloudChain(keyalias="alias/new")
    result = moved.reencrypt()
    assert (result.reencrypted, result.current, result.failed) == (1, 0, ())
    item = dynamodb.get_item(
        TableName="safedb", Key={"Service": {"S": "svc"}, "Username": {"S": "u"}}
    )["Item"]
    versions = [item, *[entry["M"] for entry in item["History"]["L"]]]
    assert {v["KeyId"]["S"] for v in versions} == {new_arn}
    v2 = versions[2]
    assert (
        _key_of(kms, v2["Secret"], {"Service": "svc", "Username": "u", "Version": "2"}) == new_arn
    )
    assert [moved.read("svc", "u", version=n) for n in (1, 2, 3, 4)] == [
        "v1", "v2", "x" * 5000, b"\x00binary",
    ]  # fmt: skip


def test_reencrypt_is_idempotent(chain: CloudChain) -> None:
    chain.save("svc", "u", "v")
    CloudChain(keyalias="alias/new").setup(create_key=True)
    moved = CloudChain(keyalias="alias/new")
    assert moved.reencrypt().reencrypted == 1
    calls = CallCounter(moved._kms, moved._dynamodb)
    again = moved.reencrypt()
    assert (again.reencrypted, again.current) == (0, 1)
    assert "ReEncrypt" not in calls.operations
    assert "PutItem" not in calls.operations


def test_reencrypt_upgrades_legacy_rows_and_the_recipe_then_works(
    legacy: CloudChain, kms: Any, dynamodb: Any
) -> None:
    result = legacy.reencrypt("old")
    assert (result.reencrypted, result.current) == (3, 0)
    assert not any(e.legacy for e in legacy.list())
    for kind in LEGACY:
        item = dynamodb.get_item(
            TableName="safedb", Key={"Service": {"S": "old"}, "Username": {"S": kind}}
        )["Item"]
        assert item["Context"] == {"S": "Service,Username,Version"}
        assert item["Version"] == {"N": "1"}
        context = {"Service": "old", "Username": kind, "Version": "1"}
        plaintext = kms.decrypt(
            CiphertextBlob=base64.b64decode(item["Secret"]["S"]), EncryptionContext=context
        )
        assert plaintext["Plaintext"] == f"value of {kind}".encode()
        assert legacy.read("old", kind) == f"value of {kind}"


def test_reencrypt_counts_and_names_a_failing_row_and_goes_on(
    chain: CloudChain, dynamodb: Any
) -> None:
    chain.save("svc", "good", "g")
    chain.save("svc", "bad", "b")
    item = dynamodb.get_item(
        TableName="safedb", Key={"Service": {"S": "svc"}, "Username": {"S": "bad"}}
    )["Item"]
    item["Secret"] = {"S": base64.b64encode(b"garbage").decode()}
    item.pop("Digest")
    dynamodb.put_item(TableName="safedb", Item=item)
    CloudChain(keyalias="alias/new").setup(create_key=True)
    seen: list[tuple[int, int]] = []
    result = CloudChain(keyalias="alias/new").reencrypt(progress=lambda d, t: seen.append((d, t)))
    assert (result.reencrypted, result.failed) == (1, ("svc/bad",))
    assert sorted(seen) == [(1, 2), (2, 2)]


def test_a_save_during_reencrypt_is_never_overwritten(
    chain: CloudChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain.save("svc", "u", "before")
    CloudChain(keyalias="alias/new").setup(create_key=True)
    moved = CloudChain(keyalias="alias/new")
    original = SecretStore._moved
    raced: list[bool] = []

    def save_in_between(self: SecretStore, *args: Any) -> Any:
        if not raced:
            raced.append(True)
            chain.save("svc", "u", "saved-during-reencrypt")
        return original(self, *args)

    monkeypatch.setattr(SecretStore, "_moved", save_in_between)
    assert moved.reencrypt().reencrypted == 1
    assert moved.read("svc", "u") == "saved-during-reencrypt"
    assert moved.read("svc", "u", version=1) == "before"


def test_policy_offline_makes_no_aws_call() -> None:
    offline = CloudChain(endpoint_url="http://127.0.0.1:9", region_name="eu-west-1", tablename="t")
    arn = "arn:aws:kms:eu-west-1:111122223333:key/abcd"
    policy = offline.policy("billing", "read", account="111122223333", key_arn=arn)
    dynamo, key = policy["Statement"]
    assert policy["Version"] == "2012-10-17"
    assert dynamo["Action"] == ["dynamodb:GetItem", "dynamodb:Query"]
    assert dynamo["Resource"] == "arn:aws:dynamodb:eu-west-1:111122223333:table/t"
    assert dynamo["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["billing"]}
    }
    assert key["Action"] == ["kms:Decrypt"]
    assert key["Resource"] == arn
    assert key["Condition"] == {"StringEquals": {"kms:EncryptionContext:Service": "billing"}}


def test_write_policy_adds_write_actions() -> None:
    policy = CloudChain().policy(
        "b", "write", account="1", key_arn="arn:aws-cn:kms:cn-north-1:1:key/k"
    )
    dynamo, key = policy["Statement"]
    assert dynamo["Action"] == [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
    ]
    assert key["Action"] == ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    assert dynamo["Resource"].startswith("arn:aws-cn:dynamodb:")


def test_policy_resolves_account_and_key_through_aws(chain: CloudChain, kms: Any) -> None:
    policy = chain.policy("billing", "read")
    arn = kms.describe_key(KeyId=KEY_ALIAS)["KeyMetadata"]["Arn"]
    assert policy["Statement"][1]["Resource"] == arn
    assert (
        policy["Statement"][0]["Resource"] == "arn:aws:dynamodb:us-east-1:123456789012:table/safedb"
    )


def test_policy_needs_a_key(aws: None) -> None:
    with pytest.raises(CloudChainConfigError):
        CloudChain().policy("billing", "read", account="1")
