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
    # KMS is asked where each version is (the KeyId attribute is not trusted), but no
    # plaintext leaves KMS and nothing is written.
    assert set(calls.operations) == {"DescribeKey", "Scan", "GetItem", "ReEncrypt"}


def test_an_edited_key_id_does_not_make_reencrypt_skip_a_version(
    chain: CloudChain, kms: Any, dynamodb: Any
) -> None:
    chain.save("svc", "u", "v1")
    chain.save("svc", "u", "v2")
    CloudChain(keyalias="alias/new").setup(create_key=True)
    new_arn = kms.describe_key(KeyId="alias/new")["KeyMetadata"]["Arn"]
    key = {"Service": {"S": "svc"}, "Username": {"S": "u"}}
    item = dynamodb.get_item(TableName="safedb", Key=key)["Item"]
    item["KeyId"] = {"S": new_arn}  # claims both versions are under the new key already
    item["History"]["L"][0]["M"]["KeyId"] = {"S": new_arn}
    dynamodb.put_item(TableName="safedb", Item=item)
    assert CloudChain(keyalias="alias/new").reencrypt().reencrypted == 1
    item = dynamodb.get_item(TableName="safedb", Key=key)["Item"]
    for stored, version in ((item, "2"), (item["History"]["L"][0]["M"], "1")):
        context = {"Service": "svc", "Username": "u", "Version": version}
        assert _key_of(kms, stored["Secret"], context) == new_arn


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
    original = SecretStore.moved
    raced: list[bool] = []

    def save_in_between(self: SecretStore, *args: Any) -> Any:
        if not raced:
            raced.append(True)
            chain.save("svc", "u", "saved-during-reencrypt")
        return original(self, *args)

    monkeypatch.setattr(SecretStore, "moved", save_in_between)
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


# -- no downgrade to the legacy read path --------------------------------------------------------


def _item(dynamodb: Any, service: str = "svc", user: str = "u") -> dict[str, Any]:
    key = {"Service": {"S": service}, "Username": {"S": user}}
    return dynamodb.get_item(TableName="safedb", Key=key)["Item"]


def _planted(kms: Any, context: dict[str, str], value: bytes = b"planted") -> dict[str, str]:
    blob = kms.encrypt(KeyId=KEY_ALIAS, Plaintext=value, EncryptionContext=context)
    return {"S": base64.b64encode(blob["CiphertextBlob"]).decode()}


@pytest.mark.parametrize("context", [{"string": "string"}, {}, {"Service": "svc", "Username": "u"}])
def test_a_modern_row_stripped_of_its_context_never_takes_the_legacy_path(
    chain: CloudChain, kms: Any, dynamodb: Any, context: dict[str, str]
) -> None:
    chain.save("svc", "u", "genuine")
    item = _item(dynamodb)
    del item["Context"]
    item.pop("Digest")
    item["Secret"] = _planted(kms, context)
    dynamodb.put_item(TableName="safedb", Item=item)
    with pytest.raises(IntegrityError, match=r"svc/u version 1.*no encryption context") as info:
        chain.read("svc", "u")
    assert "planted" not in str(info.value)


@pytest.mark.parametrize("context", [{"string": "string"}, {}])
def test_a_history_entry_stripped_of_its_context_never_takes_the_legacy_path(
    chain: CloudChain, kms: Any, dynamodb: Any, context: dict[str, str]
) -> None:
    chain.save("svc", "u", "one")
    chain.save("svc", "u", "two")
    item = _item(dynamodb)
    old = item["History"]["L"][0]["M"]
    for name in list(old):  # everything but Secret and Version: as bare as a history entry gets
        if name not in ("Secret", "Version"):
            del old[name]
    old["Secret"] = _planted(kms, context)
    dynamodb.put_item(TableName="safedb", Item=item)
    with pytest.raises(IntegrityError, match="version 1"):
        chain.read("svc", "u", version=1)


@pytest.mark.parametrize("extra", ["Version", "SavedAt", "Digest", "KeyId", "Revision", "Tags"])
def test_any_attribute_of_ours_rules_out_the_legacy_path(
    chain: CloudChain, kms: Any, dynamodb: Any, extra: str
) -> None:
    put_legacy_row(kms, dynamodb, "old", "u", "0.x", "legacy value")
    assert chain.read("old", "u") == "legacy value"
    item = _item(dynamodb, "old", "u")
    item[extra] = (
        {"M": {}}
        if extra == "Tags"
        else {"N": "1"}
        if extra in ("Version", "Revision")
        else {"S": "x"}
    )
    dynamodb.put_item(TableName="safedb", Item=item)
    with pytest.raises(IntegrityError):
        chain.read("old", "u")


@pytest.mark.parametrize(
    "settings",
    [{"allow_legacy": False}, {"env": "0"}, {"env": "false"}, {"file": "allow_legacy = false"},
     {"file": "[cloudchain]\nallow_legacy = off"}],
)  # fmt: skip
def test_legacy_rows_can_be_refused_entirely(
    legacy: CloudChain,
    settings: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    clean_env: Any,
) -> None:
    if "env" in settings:
        monkeypatch.setenv("CLOUDCHAIN_ALLOW_LEGACY", settings["env"])
    if "file" in settings:
        (clean_env / ".cchainrc").write_text(settings["file"] + "\n")
    strict = CloudChain.from_config(**{k: v for k, v in settings.items() if k == "allow_legacy"})
    assert strict.config.allow_legacy is False
    for kind in LEGACY:
        with pytest.raises(IntegrityError, match=rf"old/{kind} .*legacy.*--reencrypt"):
            strict.read("old", kind)
    assert strict.read("new", "u") == "current"


def test_after_reencrypt_legacy_rows_read_with_legacy_refused(legacy: CloudChain) -> None:
    assert legacy.reencrypt().failed == ()
    strict = CloudChain(allow_legacy=False)
    assert [strict.read("old", kind) for kind in LEGACY] == [f"value of {k}" for k in LEGACY]


def test_a_pre_versions_row_with_a_binary_secret_attribute_can_be_written(
    chain: CloudChain, kms: Any, dynamodb: Any
) -> None:
    blob = kms.encrypt(
        KeyId=KEY_ALIAS, Plaintext=b"raw", EncryptionContext={"Service": "old", "Username": "b"}
    )["CiphertextBlob"]
    item = {"Service": {"S": "old"}, "Username": {"S": "b"}, "Secret": {"B": blob}}
    dynamodb.put_item(TableName="safedb", Item=item)
    assert chain.read("old", "b") == "raw"
    assert chain.save("old", "b", "new") == 2
    assert [chain.read("old", "b", version=n) for n in (1, 2)] == ["raw", "new"]


# -- the binary flag is bound -------------------------------------------------------------------


def test_a_binary_secret_is_bound_as_binary(chain: CloudChain, dynamodb: Any) -> None:
    chain.save("svc", "u", b"\x00\xffbytes")
    item = _item(dynamodb)
    assert item["Context"] == {"S": "Service,Username,Version,Binary"}
    item["Binary"] = {"BOOL": False}  # the flag alone cannot turn it into text
    dynamodb.put_item(TableName="safedb", Item=item)
    assert chain.read("svc", "u") == b"\x00\xffbytes"
    item["Context"] = {"S": "Service,Username,Version"}  # nor can dropping it from the context
    dynamodb.put_item(TableName="safedb", Item=item)
    with pytest.raises(IntegrityError):
        chain.read("svc", "u")


def test_a_text_secret_flagged_binary_warns_and_is_refused_without_legacy(
    chain: CloudChain, dynamodb: Any, caplog: pytest.LogCaptureFixture
) -> None:
    chain.save("svc", "u", "text")
    item = _item(dynamodb)
    item["Binary"] = {"BOOL": True}  # what a binary version saved before the binding looks like
    dynamodb.put_item(TableName="safedb", Item=item)
    assert chain.read("svc", "u") == b"text"
    assert "svc/u version 1" in caplog.text and "--reencrypt" in caplog.text
    with pytest.raises(IntegrityError, match="legacy"):
        CloudChain(allow_legacy=False).read("svc", "u")


def test_reencrypt_binds_a_binary_version_saved_before_the_binding(
    chain: CloudChain, kms: Any, dynamodb: Any
) -> None:
    # A binary version as the previous release wrote it: the versioned context, Binary=true.
    context = {"Service": "svc", "Username": "u", "Version": "1"}
    blob = kms.encrypt(KeyId=KEY_ALIAS, Plaintext=b"\x01\x02", EncryptionContext=context)
    dynamodb.put_item(
        TableName="safedb",
        Item={
            "Service": {"S": "svc"},
            "Username": {"S": "u"},
            "Secret": {"S": base64.b64encode(blob["CiphertextBlob"]).decode()},
            "Version": {"N": "1"},
            "Context": {"S": "Service,Username,Version"},
            "Binary": {"BOOL": True},
        },
    )
    assert chain.reencrypt().reencrypted == 1
    assert _item(dynamodb)["Context"] == {"S": "Service,Username,Version,Binary"}
    assert CloudChain(allow_legacy=False).read("svc", "u") == b"\x01\x02"


def test_a_crypto_error_names_the_row_and_version(chain: CloudChain, dynamodb: Any) -> None:
    chain.save("svc", "u", "x" * 5000)  # envelope: its AES-GCM layer is checked locally
    item = _item(dynamodb)
    blob = bytearray(item["Secret"]["B"])
    blob[-1] ^= 1
    item["Secret"] = {"B": bytes(blob)}
    item["Digest"] = {"S": __import__("hashlib").sha256(bytes(blob)).hexdigest()}
    dynamodb.put_item(TableName="safedb", Item=item)
    for call in (lambda: chain.read("svc", "u"), lambda: chain.export("svc")):
        with pytest.raises(IntegrityError, match=r"svc/u version 1 .*AES-GCM"):
            call()
