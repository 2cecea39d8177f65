"""Versions, retention, history, rollback, check-and-set and replay protection (API, moto)."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from helpers import KEY_ALIAS, CallCounter

from cloudchain import (
    CloudChain,
    CloudChainError,
    IntegrityError,
    SecretNotFoundError,
    ValidationError,
    VersionConflictError,
    crypto,
    table,
)
from cloudchain.cli import main
from cloudchain.layout import ITEM_SIZE_LIMIT, StoredVersion, build_item, item_size

KEY = {"Service": {"S": "billing"}, "Username": {"S": "alice"}}


def _item(dynamodb: Any) -> dict[str, Any]:
    return dynamodb.get_item(TableName="safedb", Key=KEY)["Item"]


def test_each_save_makes_the_next_version_and_records_it(chain: CloudChain, dynamodb: Any) -> None:
    assert [chain.save("billing", "alice", f"v{n}") for n in range(1, 4)] == [1, 2, 3]
    item = _item(dynamodb)
    assert item["Version"] == {"N": "3"}
    assert item["Context"] == {"S": "Service,Username,Version"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", item["SavedAt"]["S"])
    assert [int(e["M"]["Version"]["N"]) for e in item["History"]["L"]] == [2, 1]
    assert chain.read("billing", "alice") == "v3"


def test_read_of_a_retained_version(chain: CloudChain) -> None:
    for n in range(1, 4):
        chain.save("billing", "alice", f"v{n}")
    assert [chain.read("billing", "alice", version=n) for n in (1, 2, 3)] == ["v1", "v2", "v3"]


@pytest.mark.parametrize("version", [4, 99])
def test_read_of_a_version_never_written_is_not_found(chain: CloudChain, version: int) -> None:
    chain.save("billing", "alice", "v1")
    with pytest.raises(SecretNotFoundError, match=rf"version {version} .*retained: 1"):
        chain.read("billing", "alice", version=version)


@pytest.mark.parametrize("bad", [0, -1, True, "2"])
def test_bad_version_numbers_are_refused(chain: CloudChain, bad: Any) -> None:
    with pytest.raises(ValidationError):
        chain.read("billing", "alice", version=bad)


def test_default_retention_keeps_the_ten_newest(chain: CloudChain) -> None:
    for n in range(1, 13):
        chain.save("billing", "alice", f"v{n}")
    assert [v.version for v in chain.history("billing", "alice")] == list(range(12, 2, -1))
    assert chain.read("billing", "alice", version=3) == "v3"
    with pytest.raises(SecretNotFoundError, match="pruned"):
        chain.read("billing", "alice", version=2)


def _saves(chain: CloudChain, count: int) -> list[int]:
    for n in range(1, count + 1):
        chain.save("billing", "alice", f"v{n}")
    return [v.version for v in chain.history("billing", "alice")]


def test_custom_retention_from_the_constructor(chain: CloudChain) -> None:
    assert _saves(CloudChain(keyalias=KEY_ALIAS, history_size=3), 5) == [5, 4, 3]


def test_retention_of_one_keeps_only_the_current(chain: CloudChain) -> None:
    assert _saves(CloudChain(keyalias=KEY_ALIAS, history_size=1), 3) == [3]


def test_custom_retention_from_env_and_file_applies_to_new_secrets(
    chain: CloudChain, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".cchainrc").write_text(
        f"[dynamo]\nhistory = 2\n[IAMKMS]\nkeyalias = {KEY_ALIAS}\n"
    )
    assert _saves(CloudChain.from_config(), 3) == [3, 2]
    monkeypatch.setenv("CLOUDCHAIN_HISTORY", "4")
    from_env = CloudChain.from_config()
    for n in range(5):
        from_env.save("billing", "bob", f"v{n}")
    assert [v.version for v in from_env.history("billing", "bob")] == [5, 4, 3, 2]


def test_retention_is_recorded_with_the_secret_and_other_clients_keep_it(
    chain: CloudChain, dynamodb: Any
) -> None:
    chain.save("billing", "alice", "v1", history_size=5)
    assert _item(dynamodb)["Retention"] == {"N": "5"}
    stingy = CloudChain(keyalias=KEY_ALIAS, history_size=1)
    for n in range(2, 8):
        stingy.save("billing", "alice", f"v{n}")
    assert [v.version for v in chain.history("billing", "alice")] == [7, 6, 5, 4, 3]
    # Only an explicit setting on a save changes it.
    stingy.save("billing", "alice", "v8", history_size=2)
    assert [v.version for v in chain.history("billing", "alice")] == [8, 7]
    assert _item(dynamodb)["Retention"] == {"N": "2"}


def test_custom_retention_from_the_cli_flag(chain: CloudChain) -> None:
    for n in range(3):
        assert main(["-u", "alice", "-e", "billing", "-s", f"v{n}", "--history-size", "2",
                     "--key-alias", KEY_ALIAS]) == 0  # fmt: skip
    assert [v.version for v in chain.history("billing", "alice")] == [3, 2]


def test_history_is_newest_first_and_makes_no_kms_call(
    chain: CloudChain, calls: CallCounter
) -> None:
    chain.save("billing", "alice", "a")
    chain.save("billing", "alice", "b")
    calls.operations.clear()
    history = chain.history("billing", "alice")
    assert [v.version for v in history] == [2, 1]
    assert history[0].saved_at is not None
    assert history[0].saved_at >= history[1].saved_at  # type: ignore[operator]
    assert calls.operations == ["GetItem"]


def test_history_of_a_missing_secret_is_not_found(chain: CloudChain) -> None:
    with pytest.raises(SecretNotFoundError):
        chain.history("billing", "nobody")


def test_rollback_saves_an_old_value_as_a_new_version(chain: CloudChain) -> None:
    for value in ("good", "typo", "worse"):
        chain.save("billing", "alice", value)
    assert chain.rollback("billing", "alice", 1) == 4
    assert chain.read("billing", "alice") == "good"
    assert chain.read("billing", "alice", version=3) == "worse"


def test_rollback_to_a_missing_version_writes_nothing(chain: CloudChain) -> None:
    chain.save("billing", "alice", "only")
    with pytest.raises(SecretNotFoundError):
        chain.rollback("billing", "alice", 7)
    assert [v.version for v in chain.history("billing", "alice")] == [1]


def test_expect_version_zero_creates_only_a_new_secret(chain: CloudChain) -> None:
    assert chain.save("billing", "alice", "first", expect_version=0) == 1
    with pytest.raises(VersionConflictError, match="at version 1, not 0") as info:
        chain.save("billing", "alice", "second", expect_version=0)
    assert info.value.current_version == 1
    assert chain.read("billing", "alice") == "first"


def test_expect_version_saves_only_on_a_match(chain: CloudChain) -> None:
    chain.save("billing", "alice", "one")
    chain.save("billing", "alice", "two")
    with pytest.raises(VersionConflictError) as info:
        chain.save("billing", "alice", "stale", expect_version=1)
    assert info.value.current_version == 2
    assert "stale" not in str(info.value)
    assert chain.save("billing", "alice", "three", expect_version=2) == 3
    assert [v.version for v in chain.history("billing", "alice")] == [3, 2, 1]


def test_expect_version_on_a_missing_secret_reports_version_zero(chain: CloudChain) -> None:
    with pytest.raises(VersionConflictError) as info:
        chain.save("billing", "alice", "x", expect_version=3)
    assert info.value.current_version == 0


def _put_pre_versions_item(kms: Any, dynamodb: Any, secret: str) -> None:
    blob = kms.encrypt(
        KeyId=KEY_ALIAS,
        Plaintext=secret.encode(),
        EncryptionContext={"Service": "billing", "Username": "alice"},
    )["CiphertextBlob"]
    dynamodb.put_item(
        TableName="safedb", Item={**KEY, "Secret": {"S": base64.b64encode(blob).decode()}}
    )


def test_pre_versions_item_reads_as_version_1_and_upgrades(
    chain: CloudChain, kms: Any, dynamodb: Any
) -> None:
    _put_pre_versions_item(kms, dynamodb, "from-reference-cloudchain")
    assert chain.read("billing", "alice") == "from-reference-cloudchain"
    assert [(v.version, v.saved_at) for v in chain.history("billing", "alice")] == [(1, None)]
    assert chain.save("billing", "alice", "upgraded") == 2
    assert chain.read("billing", "alice") == "upgraded"
    assert chain.read("billing", "alice", version=1) == "from-reference-cloudchain"
    old = _item(dynamodb)["History"]["L"][0]["M"]
    # Moved into History, the reference version is bound to its row as version 1: the legacy
    # contexts are never tried on a history entry.
    assert old["Context"] == {"S": "Service,Username,Version"}
    assert old["Version"] == {"N": "1"}


def test_pre_versions_item_changed_under_a_save_is_not_overwritten(
    chain: CloudChain, kms: Any, dynamodb: Any
) -> None:
    _put_pre_versions_item(kms, dynamodb, "first")
    assert chain.save("billing", "alice", "second", expect_version=1) == 2
    _put_pre_versions_item(kms, dynamodb, "written-by-an-old-client")
    with pytest.raises(VersionConflictError):
        chain.save("billing", "alice", "third", expect_version=2)


def test_replayed_old_version_is_refused(chain: CloudChain, dynamodb: Any) -> None:
    chain.save("billing", "alice", "old-password")
    chain.save("billing", "alice", "new-password")
    item = _item(dynamodb)
    item["Secret"] = item["History"]["L"][0]["M"]["Secret"]
    item["Digest"] = item["History"]["L"][0]["M"]["Digest"]  # a careful attacker copies both
    dynamodb.put_item(TableName="safedb", Item=item)
    with pytest.raises(IntegrityError, match="billing/alice") as info:
        chain.read("billing", "alice")
    assert "password" not in str(info.value)


def test_replay_with_the_binding_downgraded_is_refused(chain: CloudChain, dynamodb: Any) -> None:
    chain.save("billing", "alice", "old-password")
    chain.save("billing", "alice", "new-password")
    item = _item(dynamodb)
    item["Secret"] = item["History"]["L"][0]["M"]["Secret"]
    item["Digest"] = item["History"]["L"][0]["M"]["Digest"]  # a careful attacker copies both
    item["Context"] = {"S": "Service,Username"}
    dynamodb.put_item(TableName="safedb", Item=item)
    with pytest.raises(IntegrityError):
        chain.read("billing", "alice")


def test_unknown_recorded_context_key_is_an_integrity_error(
    chain: CloudChain, dynamodb: Any
) -> None:
    chain.save("billing", "alice", "x")
    item = _item(dynamodb)
    item["Context"] = {"S": "Service,Username,Tenant"}
    dynamodb.put_item(TableName="safedb", Item=item)
    with pytest.raises(IntegrityError, match="unknown context keys"):
        chain.read("billing", "alice")


def test_delete_is_recoverable_and_purge_removes_every_version(
    chain: CloudChain, dynamodb: Any
) -> None:
    chain.save("billing", "alice", "a")
    chain.save("billing", "alice", "b")
    deleted = chain.delete("billing", "alice")
    assert deleted.version == 3
    for version in (None, 1, 2):
        with pytest.raises(SecretNotFoundError):
            chain.read("billing", "alice", version=version)
    assert "Secret" not in _item(dynamodb)  # the reference attribute holds nothing readable
    assert chain.undelete("billing", "alice") == 4
    assert chain.read("billing", "alice") == "b"
    chain.delete("billing", "alice")
    chain.purge("billing", "alice")
    assert "Item" not in dynamodb.get_item(TableName="safedb", Key=KEY)
    assert chain.save("billing", "alice", "again") == 1


def test_oversized_history_is_pruned_to_fit_a_dynamodb_item(
    dynamodb: Any, chain: CloudChain
) -> None:
    def version(n: int) -> StoredVersion:
        return StoredVersion(n, b"\0" * 60_000, "t", ("Service", "Username", "Version"))

    def unpruned(history: list[StoredVersion]) -> dict[str, Any]:
        item = build_item("billing", "alice", version(10), [])
        item["History"] = {"L": [{"M": build_item("b", "a", v, [])} for v in history]}
        return item

    history = [version(n) for n in range(9, 0, -1)]
    with pytest.raises(ClientError, match="Item size"):
        dynamodb.put_item(TableName="safedb", Item=unpruned(history))
    item = build_item("billing", "alice", version(10), history)
    kept = [e["M"]["Version"]["N"] for e in item["History"]["L"]]
    assert kept == ["9", "8", "7"]  # the newest that fit, oldest pruned first
    assert item_size(item) <= ITEM_SIZE_LIMIT
    assert item_size(unpruned(history[:4])) > ITEM_SIZE_LIMIT
    dynamodb.put_item(TableName="safedb", Item=item)


def test_a_save_racing_a_reencrypt_never_puts_the_old_key_back(
    chain: CloudChain, kms: Any, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain.save("billing", "alice", "v1")
    CloudChain(keyalias="alias/new").setup(create_key=True)
    new_arn = kms.describe_key(KeyId="alias/new")["KeyMetadata"]["Arn"]
    mover = CloudChain(keyalias="alias/new")
    encrypt = crypto.encrypt
    raced: list[bool] = []

    def encrypt_after_a_reencrypt(*args: Any) -> Any:
        # The save has read version 1 and is about to write; a re-encryption gets in first.
        if not raced:
            raced.append(True)
            assert mover.reencrypt().reencrypted == 1
        return encrypt(*args)

    monkeypatch.setattr(crypto, "encrypt", encrypt_after_a_reencrypt)
    assert chain.save("billing", "alice", "v2") == 2
    old = _item(dynamodb)["History"]["L"][0]["M"]
    blob = base64.b64decode(old["Secret"]["S"])
    context = {"Service": "billing", "Username": "alice", "Version": "1"}
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["KeyId"] == new_arn


def test_every_write_increments_the_revision_it_is_conditional_on(
    chain: CloudChain, dynamodb: Any
) -> None:
    chain.save("billing", "alice", "v1")
    assert _item(dynamodb)["Revision"] == {"N": "1"}
    chain.save("billing", "alice", "v2")
    chain.rollback("billing", "alice", 1)
    CloudChain(keyalias="alias/new").setup(create_key=True)
    CloudChain(keyalias="alias/new").reencrypt()
    assert _item(dynamodb)["Revision"] == {"N": "4"}


def test_a_write_that_keeps_losing_gives_up_at_its_deadline_naming_the_row(
    chain: CloudChain, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain.save("billing", "alice", "v1")
    hasty = CloudChain(keyalias=KEY_ALIAS, read_timeout=0.3)
    put = table.put_item
    inside: list[bool] = []

    def someone_always_gets_in_first(client: Any, name: str, item: Any, expected: Any) -> None:
        if not inside:  # the other writer's own put goes straight through
            inside.append(True)
            chain.save("billing", "alice", "other writer")
            inside.clear()
        put(client, name, item, expected)

    monkeypatch.setattr(table, "put_item", someone_always_gets_in_first)
    with pytest.raises(CloudChainError, match=r"cannot save billing/alice .*kept changing"):
        hasty.save("billing", "alice", "mine")
