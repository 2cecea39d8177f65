"""Staged versions: pending, promote, abort, previous, and the rotation lease (API, moto)."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from helpers import KEY_ALIAS, CallCounter

import cloudchain
from cloudchain import (
    CloudChain,
    IntegrityError,
    SecretNotFoundError,
    ValidationError,
    VersionConflictError,
)
from cloudchain.cli import main
from cloudchain.staging import RotationBusyError

KEY = {"Service": {"S": "billing"}, "Username": {"S": "alice"}}
ROW = ["-u", "alice", "-e", "billing"]


def _item(dynamodb: Any, key: dict[str, Any] = KEY) -> dict[str, Any]:
    return dynamodb.get_item(TableName="safedb", Key=key)["Item"]


def _stages(chain: CloudChain) -> list[tuple[int, str | None, str | None]]:
    return [(v.version, v.stage, v.action) for v in chain.history("billing", "alice")]


def test_a_pending_version_is_seen_only_by_who_asks_for_it(chain: CloudChain) -> None:
    chain.save("billing", "alice", "old")
    assert chain.save("billing", "alice", "new", stage="pending", comment="rotate") == 2
    assert chain.read("billing", "alice") == "old"
    assert chain.read_versioned("billing", "alice").version == 1
    assert chain.export("billing") == {"alice": "old"}
    cloudchain.region_name = "us-east-1"
    assert cloudchain.readcreds("billing", "alice") == "old"
    assert chain.read("billing", "alice", stage="pending") == "new"
    assert chain.read("billing", "alice", 2) == "new"  # --secret-version finds it
    with pytest.raises(SecretNotFoundError, match="no previous version"):
        chain.read("billing", "alice", stage="previous")
    with pytest.raises(ValidationError, match="a version or a stage"):
        chain.read("billing", "alice", 1, stage="pending")
    with pytest.raises(ValidationError, match="stage must be"):
        chain.read("billing", "alice", stage="AWSPENDING")
    assert _stages(chain) == [(2, "pending", "save"), (1, "current", "save")]
    chain.save("billing", "bob", "bob-old")
    cloudchain.keyalias = KEY_ALIAS
    cloudchain.savecreds("billing", "bob", "bob-new", stage="pending")
    assert cloudchain.readcreds("billing", "bob") == "bob-old"
    assert chain.read("billing", "bob", stage="pending") == "bob-new"


def test_promote_keeps_the_number_and_makes_the_old_current_previous(chain: CloudChain) -> None:
    chain.save("billing", "alice", "old")
    chain.save("billing", "alice", "new", stage="pending")
    assert chain.promote("billing", "alice", expect_version=1, comment="db updated") == 2
    assert chain.read_versioned("billing", "alice").version == 2
    assert chain.read("billing", "alice") == "new"
    assert chain.read("billing", "alice", 2) == "new"
    assert chain.read("billing", "alice", stage="previous") == "old"
    with pytest.raises(SecretNotFoundError, match="no pending version"):
        chain.read("billing", "alice", stage="pending")
    info = chain.history("billing", "alice")[0]
    assert (info.action, info.comment, info.stage) == ("promote", "db updated", "current")
    with pytest.raises(SecretNotFoundError, match="no pending version"):
        chain.promote("billing", "alice")
    assert chain.save("billing", "alice", "newer") == 3
    assert chain.read("billing", "alice", stage="previous") == "new"


def test_promote_refuses_a_changed_current_version(chain: CloudChain) -> None:
    chain.save("billing", "alice", "old")
    chain.save("billing", "alice", "new", stage="pending")
    with pytest.raises(VersionConflictError, match="not 7"):
        chain.promote("billing", "alice", expect_version=7)
    chain.save("billing", "alice", "saved-meanwhile")  # takes 3: past the pending 2
    assert chain.read("billing", "alice", stage="pending") == "new"  # a save keeps it
    with pytest.raises(VersionConflictError, match="older than the current"):
        chain.promote("billing", "alice")
    assert chain.read("billing", "alice") == "saved-meanwhile"


def test_a_second_pending_version_is_refused_unless_replaced(chain: CloudChain) -> None:
    chain.save("billing", "alice", "old")
    chain.save("billing", "alice", "first", stage="pending")
    with pytest.raises(VersionConflictError, match="already has pending version 2"):
        chain.save("billing", "alice", "second", stage="pending")
    assert chain.save("billing", "alice", "second", stage="pending", replace_pending=True) == 3
    assert chain.read("billing", "alice", stage="pending") == "second"
    with pytest.raises(SecretNotFoundError):
        chain.read("billing", "alice", 2)  # the replaced one is gone, number and all
    with pytest.raises(SecretNotFoundError):
        chain.save("billing", "nobody", "x", stage="pending")  # only beside a current one
    with pytest.raises(ValidationError, match="no expect_version"):
        chain.save("billing", "alice", "x", stage="pending", tags={"a": "b"})


def test_abort_discards_the_value_and_records_why(chain: CloudChain, dynamodb: Any) -> None:
    chain.save("billing", "alice", "old")
    chain.save("billing", "alice", "bad", stage="pending")
    assert chain.abort("billing", "alice", comment="db refused it") == 2
    assert "Pending" not in _item(dynamodb)
    aborted = chain.history("billing", "alice")[1]
    assert (aborted.version, aborted.action, aborted.comment) == (2, "abort", "db refused it")
    with pytest.raises(SecretNotFoundError, match="record of an abort"):
        chain.read("billing", "alice", 2)
    with pytest.raises(SecretNotFoundError, match="no previous version"):
        chain.read("billing", "alice", stage="previous")  # an abort is no previous value
    with pytest.raises(SecretNotFoundError, match="no pending version"):
        chain.abort("billing", "alice")
    assert chain.save("billing", "alice", "next", stage="pending") == 3  # never 2 again
    chain.promote("billing", "alice")
    assert chain.read("billing", "alice", stage="previous") == "old"  # not the abort


def test_swapped_or_replayed_pending_ciphertext_fails_to_decrypt(
    chain: CloudChain, dynamodb: Any
) -> None:
    chain.save("billing", "alice", "alice-old")
    chain.save("billing", "alice", "alice-new", stage="pending")
    chain.save("billing", "bob", "bob-old")
    chain.save("billing", "bob", "bob-new", stage="pending")
    alice, bob = _item(dynamodb), _item(dynamodb, {**KEY, "Username": {"S": "bob"}})
    bob["Pending"] = alice["Pending"]  # swapped between rows, digest and all
    dynamodb.put_item(TableName="safedb", Item=bob)
    with pytest.raises(IntegrityError, match="billing/bob"):
        chain.read("billing", "bob", stage="pending")
    pending = alice["Pending"]["M"]
    pending["Secret"], pending["Digest"] = alice["Secret"], alice["Digest"]  # version 1 replayed
    dynamodb.put_item(TableName="safedb", Item=alice)
    with pytest.raises(IntegrityError) as info:
        chain.read("billing", "alice", stage="pending")
    assert "alice-" not in str(info.value)


def test_every_write_keeps_the_pending_version_but_delete(chain: CloudChain, dynamodb: Any) -> None:
    chain.save("billing", "alice", "old")
    chain.save("billing", "alice", "new", stage="pending")
    chain.set_tags("billing", "alice", {"team": "pay"})
    chain.rollback("billing", "alice", 1)  # version 3: past the pending one
    chain.import_secrets("billing", {"alice": "imported"})
    old_key = _item(dynamodb)["KeyId"]
    CloudChain(keyalias="alias/other").setup(create_key=True)
    assert CloudChain(keyalias="alias/other").reencrypt().reencrypted == 1
    assert chain.read("billing", "alice", stage="pending") == "new"
    item = _item(dynamodb)
    assert item["KeyId"] != old_key and item["Pending"]["M"]["KeyId"] == item["KeyId"]  # moved too
    chain.delete("billing", "alice")
    assert "Pending" not in _item(dynamodb)
    chain.undelete("billing", "alice")
    with pytest.raises(SecretNotFoundError):
        chain.read("billing", "alice", stage="pending")
    chain.save("billing", "alice", "again", stage="pending")
    chain.purge("billing", "alice", force=True)
    assert "Item" not in dynamodb.get_item(TableName="safedb", Key=KEY)


def test_reads_of_the_current_value_make_the_same_requests_with_a_pending_one(
    chain: CloudChain,
) -> None:
    chain.save("billing", "alice", "old")
    chain.save("billing", "bob", "old")
    chain.save("billing", "alice", "new", stage="pending")
    counted = []
    for user in ("bob", "alice"):  # bob has none pending
        calls = CallCounter(chain._dynamodb, chain._kms)
        chain.read("billing", user)
        chain.export("billing")
        counted.append(calls.operations)
        calls.operations = []
    assert counted[0] == counted[1] == ["GetItem", "Decrypt", "Query", "Decrypt", "Decrypt"]


def test_the_rotation_lease_lets_one_holder_in_and_expires(chain: CloudChain) -> None:
    chain.save("billing", "alice", "old")
    assert chain._claim_rotation("billing", "alice", "first", 60) == (1, None)
    with pytest.raises(RotationBusyError, match="being rotated by another run"):
        chain._claim_rotation("billing", "alice", "second", 60)
    assert chain.read("billing", "alice") == "old"  # a lease is no version
    chain._release_rotation("billing", "alice", "first")
    assert chain._claim_rotation("billing", "alice", "second", 60) == (1, None)
    chain.save("billing", "alice", "new", stage="pending")
    # Two minutes on, second's lease has run out: a crashed rotation does not block forever.
    later = time.time() + 120
    assert chain._writer.claim("billing", "alice", "third", int(later) + 60, later).pending
    with pytest.raises(RotationBusyError, match="took over"):
        chain.promote("billing", "alice", _lease="second")


def test_staging_from_the_command_line(
    chain: CloudChain, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    chain.save("billing", "alice", "old")
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        capsys.readouterr()
        stream = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
        monkeypatch.setattr(stream, "isatty", lambda: False)
        monkeypatch.setattr("sys.stdin", stream)
        code = main([*ROW, *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, _, err = run("--save", "-", "--stage", "pending", stdin="new\n")
    assert code == 0 and "staged billing/alice version 2" in err
    code, _, err = run("--save", "-", "--stage", "pending", stdin="again\n")
    assert code == 4 and "already has pending version 2" in err
    assert "hint: --promote it, --abort it, or save with --replace-pending" in err
    code, _, err = run("--save", "-", "--stage", "previous", stdin="x\n")
    assert code == 2 and err.count("\n") == 1
    assert run("--save", "-", "--replace-pending", stdin="x\n")[0] == 2
    assert run("--save", "-", "--stage", "pending", "--replace-pending", stdin="v3\n")[0] == 0
    assert run("--read", "--stage", "pending") == (0, "v3\n", "")
    assert run("--read", "--secret-version", "3") == (0, "v3\n", "")
    assert run("--read")[1] == "old\n"
    assert [(v["version"], v["stage"]) for v in json.loads(run("--history", "--json")[1])] == [
        (3, "pending"),
        (1, "current"),
    ]
    assert run("--promote", "--expect-version", "2")[0] == 4
    assert run("--promote", "--expect-version", "1", "--comment", "go")[:2] == (0, "3\n")
    assert run("--history")[1].splitlines()[0].endswith("\tpromote\tgo\tcurrent")
    assert run("--read", "--stage", "previous")[1] == "old\n"
    code, _, err = run("--abort")
    assert code == 3 and "no pending version" in err
    assert run("--abort", "--hook", "x")[0] == 2  # --hook goes with --rotate


def test_the_agents_refresh_drops_a_staged_read_of_a_changed_secret(chain: CloudChain) -> None:
    from cloudchain.agent.cached import CachedSecrets

    chain.save("billing", "alice", "old")
    chain.save("billing", "alice", "first", stage="pending")
    cached = CachedSecrets(chain, ttl=3600, stale_if_error=3600, max_entries=100,
                           prefetch=["billing"])  # fmt: skip
    cached.start()
    try:
        assert cached.secret("billing", "alice", stage="pending").value == "first"
        chain.save("billing", "alice", "second", stage="pending", replace_pending=True)
        cached._reload("billing")  # the refresh-ahead, by hand: it sees the row changed
        assert cached.secret("billing", "alice", stage="pending").value == "second"
        assert cached.secret("billing", "alice").value == "old"
    finally:
        cached.stop()


def test_a_pending_version_carries_its_own_expiry_into_current(chain: CloudChain) -> None:
    chain.save("billing", "alice", "old", not_after="2020-01-01")
    chain.save("billing", "alice", "new", stage="pending", not_after="2030-01-01T00:00:00Z")
    assert [d.user for d in chain.due("billing", within=0)] == ["alice"]  # current's expiry
    chain.promote("billing", "alice")
    assert chain.due("billing", within=0) == []
    assert chain.history("billing", "alice")[0].not_after == "2030-01-01T00:00:00Z"
    with pytest.raises(ValidationError, match="rotate_every"):
        chain.save("billing", "alice", "x", stage="pending", rotate_every=3600)
