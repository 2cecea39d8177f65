"""Attacks on staged versions and --rotate: writes that race a rotation, stale or legacy rows
(API, moto)."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY_ALIAS

from cloudchain import CloudChain, IntegrityError, ValidationError, VersionConflictError
from cloudchain.cli import main
from cloudchain.rotation import Hook, HookFailedError, rotate

LEGACY = {"Service": {"S": "old"}, "Username": {"S": "u"}}


def _hook(tmp_path: Path, body: str = "exit 0") -> Hook:
    """A hook that logs each step and the value it was given, then runs body."""
    path = tmp_path / "hook.sh"
    path.write_text(f'#!/bin/sh\nv=$(cat)\necho "$1 $v" >> {tmp_path}/calls\n{body}\n')
    path.chmod(0o755)
    return Hook((str(path),))


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls"
    return log.read_text().splitlines() if log.exists() else []


def test_staging_or_rotating_a_legacy_reference_row_keeps_its_current_value_readable(
    chain: CloudChain, kms: Any, dynamodb: Any, tmp_path: Path
) -> None:
    def legacy_row() -> None:
        blob = kms.encrypt(KeyId=KEY_ALIAS, Plaintext=b"legacy", EncryptionContext={})
        secret = base64.b64encode(blob["CiphertextBlob"]).decode()
        dynamodb.put_item(TableName="safedb", Item={**LEGACY, "Secret": {"S": secret}})

    legacy_row()
    chain.save("old", "u", "staged", stage="pending")  # the row gains Pending, Revision, ...
    assert chain.read("old", "u") == "legacy"
    chain.abort("old", "u")
    assert chain.read("old", "u") == "legacy"
    legacy_row()
    with pytest.raises(HookFailedError):  # the lease is taken and given back
        rotate(chain, "old", "u", "new", _hook(tmp_path, "exit 3"))
    assert chain.read("old", "u") == "legacy"
    legacy_row()
    assert rotate(chain, "old", "u", "new").version == 2
    assert chain.read("old", "u") == "new"
    assert chain.read("old", "u", stage="previous") == "legacy"


def test_a_rotation_promotes_only_the_pending_version_its_hook_set_and_tested(
    chain: CloudChain, tmp_path: Path
) -> None:
    chain.save("s", "u", "v1")

    def meddle(step: str, version: int) -> None:
        if step == "finish":  # an operator replaces the pending value while the hook ran
            chain.save("s", "u", "operator", stage="pending", replace_pending=True)

    with pytest.raises(VersionConflictError, match="nothing was promoted"):
        rotate(chain, "s", "u", "hooked", _hook(tmp_path), on_step=meddle)
    assert _calls(tmp_path) == ["set hooked", "test hooked"]
    assert chain.read("s", "u") == "v1"  # never a value the database was not given
    assert chain.read("s", "u", stage="pending") == "operator"

    def abort_and_stage(step: str, version: int) -> None:
        if step == "test":
            chain.abort("s", "u")
            chain.save("s", "u", "restaged", stage="pending")

    with pytest.raises(VersionConflictError, match="nothing was promoted"):
        rotate(chain, "s", "u", "unused", _hook(tmp_path), on_step=abort_and_stage)
    assert chain.read("s", "u") == "v1"
    assert chain._claim_rotation("s", "u", "next", 60) == (1, 4)  # the lease was given back


def test_a_pending_version_older_than_current_is_refused_before_the_hook_runs(
    chain: CloudChain, tmp_path: Path
) -> None:
    chain.save("s", "u", "v1")
    chain.save("s", "u", "stale", stage="pending")
    chain.save("s", "u", "v3")  # saved since: pending version 2 can never be promoted
    with pytest.raises(VersionConflictError, match="older than the current") as info:
        rotate(chain, "s", "u", "unused", _hook(tmp_path))
    assert _calls(tmp_path) == []  # the database was not set to a value that cannot go live
    assert info.value.hint is not None and "--abort" in info.value.hint
    assert chain.read("s", "u") == "v3"
    chain.abort("s", "u")  # the lease was given back, and the way out works
    assert rotate(chain, "s", "u", "v5", _hook(tmp_path)).version == 4


def test_ctrl_c_while_telling_the_agent_still_counts_the_secret_rotated(
    chain: CloudChain, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    monkeypatch.setattr("sys.stdin", None)
    for user in ("first", "second"):
        chain.save("db", user, "v1", not_after="2020-01-01")

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the agent is told about the first one

    monkeypatch.setattr("cloudchain.commands.rotation.refresh_agent", interrupted)
    assert main(["--rotate", "--due", "-e", "db", "--generate"]) == 130
    err = capsys.readouterr().err
    rotated = [u for u in ("first", "second") if chain.read_versioned("db", u).version == 2]
    assert len(rotated) == 1, err
    assert (
        f"interrupted after db/{rotated[0]}; rotated 1, failed 0, skipped 0, 1 not started" in err
    )


def test_the_hooks_output_goes_to_stderr_so_stdout_carries_only_the_version_and_value(
    chain: CloudChain, tmp_path: Path, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    monkeypatch.setattr("sys.stdin", None)
    chain.save("s", "u", "v1")
    hook = _hook(tmp_path, 'echo "hook says $1"; echo "hook warns $1" >&2')
    argv = ["-e", "s", "-u", "u", "--rotate", "--generate", "--show", "--hook", *hook.argv]
    assert main(argv) == 0
    out, err = capfd.readouterr()
    assert out.splitlines() == ["2", chain.read("s", "u")]  # `read version value` still works
    assert "hook says set\n" in err and "hook warns test\n" in err


def test_a_rotation_whose_lease_vanished_promotes_nothing(
    chain: CloudChain, tmp_path: Path
) -> None:
    chain.save("s", "u", "v1")

    def recreate(step: str, version: int) -> None:
        if step == "finish":  # purged and made again, numbers and all, while the hook ran
            chain.purge("s", "u", force=True)
            chain.save("s", "u", "new-row")
            chain.save("s", "u", "never-set", stage="pending")

    with pytest.raises(VersionConflictError, match="nothing was promoted"):
        rotate(chain, "s", "u", "hooked", _hook(tmp_path), on_step=recreate)
    assert chain.read("s", "u") == "new-row"


def test_a_hook_timeout_past_a_day_is_a_usage_error_before_any_aws_call(
    chain: CloudChain, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    monkeypatch.setattr("sys.stdin", None)
    chain.save("s", "u", "v1")
    for timeout in ("100000000w", "2d"):  # the first overflowed the wait: a traceback
        argv = ["-e", "s", "-u", "u", "--rotate", "--generate", "--hook", "/bin/true"]
        assert main([*argv, "--hook-timeout", timeout]) == 2
        err = capsys.readouterr().err
        assert err == f"cchain: error: --hook-timeout: at most 1d, not {timeout!r}\n"
    assert chain.history("s", "u")[0].stage == "current"  # nothing staged


def test_a_manual_promote_during_a_rotation_is_refused(chain: CloudChain) -> None:
    chain.save("s", "u", "v1")
    chain.save("s", "u", "set-but-not-tested", stage="pending")
    chain._claim_rotation("s", "u", "running", 60)  # a rotation between its set and test
    with pytest.raises(VersionConflictError, match="being rotated") as info:
        chain.promote("s", "u")
    assert info.value.hint is not None and "lease" in info.value.hint
    assert chain.read("s", "u") == "v1"
    chain._release_rotation("s", "u", "running")
    assert chain.promote("s", "u") == 2


def test_a_pending_version_replayed_under_a_retained_number_is_refused(
    chain: CloudChain, dynamodb: Any, tmp_path: Path
) -> None:
    chain.save("s", "u", "v1")
    chain.save("s", "u", "v2")
    chain.save("s", "u", "v3", stage="pending")
    key = {"Service": {"S": "s"}, "Username": {"S": "u"}}
    item = dynamodb.get_item(TableName="safedb", Key=key)["Item"]
    # The current version's ciphertext, number and all, copied in as the pending one.
    item["Pending"]["M"] = {k: v for k, v in item.items() if k in item["Pending"]["M"]}
    dynamodb.put_item(TableName="safedb", Item=item)
    with pytest.raises(IntegrityError, match="version 2"):
        chain.read("s", "u", stage="pending")
    with pytest.raises(IntegrityError, match="version 2"):
        chain.promote("s", "u")  # it would make two versions numbered 2
    with pytest.raises(IntegrityError, match="version 2"):
        rotate(chain, "s", "u", "unused", _hook(tmp_path))
    assert _calls(tmp_path) == []  # no hook was given the replayed value
    assert [v.version for v in chain.history("s", "u")] == [2, 2, 1]  # unchanged
    assert chain.read("s", "u") == "v2"


def test_a_library_hook_takes_a_timeout_of_at_most_a_day(chain: CloudChain) -> None:
    chain.save("s", "u", "v1")
    for timeout in (1e9, 0.0, -1.0):  # 1e9: a lease that would outlive us all
        with pytest.raises(ValidationError, match="at most 1 day"):
            rotate(chain, "s", "u", "new", Hook(("/bin/true",), timeout))
    assert chain.history("s", "u")[0].stage == "current"  # no lease, nothing staged
    assert chain._claim_rotation("s", "u", "next", 60) == (1, None)


def test_a_pending_value_too_large_to_sit_beside_the_current_one_says_so(
    chain: CloudChain, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    chain.save("s", "u", "a" * 300_000)  # each fits alone; the two do not fit in one item
    for action in (["--save", "-", "--stage", "pending"], ["--rotate"]):
        stdin = io.TextIOWrapper(io.BytesIO(b"b" * 300_000), encoding="utf-8")
        monkeypatch.setattr("sys.stdin", stdin)
        assert main(["-e", "s", "-u", "u", *action]) == 2
        err = capsys.readouterr().err.splitlines()
        assert "too large to stage beside the current value" in err[0], err
    assert chain._claim_rotation("s", "u", "next", 60) == (1, None)  # nothing staged or held


def test_a_busy_rotation_says_until_when_its_lease_runs(
    chain: CloudChain, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    monkeypatch.setattr("sys.stdin", None)
    chain.save("s", "u", "v1")
    chain._writer.claim("s", "u", "crashed", 1_900_000_000, time.time())  # a run killed -9
    assert main(["-e", "s", "-u", "u", "--rotate", "--generate"]) == 4
    error, hint = capsys.readouterr().err.splitlines()
    assert error.endswith(
        "is being rotated by another run until 2030-03-17T17:46:40Z; nothing was done"
    )
    assert hint == "cchain: hint: wait for it, or for its lease to expire"
