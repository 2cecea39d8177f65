"""--rotate's four steps with a real hook script (API and CLI in-process, moto)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
from helpers import KEY_ALIAS, CallCounter

from cloudchain import CloudChain, SecretNotFoundError
from cloudchain.cli import main
from cloudchain.rotation import Hook, HookFailedError, rotate
from cloudchain.staging import RotationBusyError

ROW = ["-u", "alice", "-e", "billing"]
# A hook that records each call (argument count, step, environment, the value it was given on
# stdin, and how many environment variables hold that value), and can be told to fail, hang,
# die by a signal or flood its output at a step.
HOOK = r"""#!/bin/sh
for step; do :; done  # the step is the last argument
cat > "$HOOK_LOG.stdin"
value=$(cat "$HOOK_LOG.stdin")
in_env=$(env | grep -cF -- "$value")
echo "$# $step $CLOUDCHAIN_SERVICE $CLOUDCHAIN_USER $CLOUDCHAIN_VERSION $CLOUDCHAIN_CURRENT_VERSION $value $in_env" >> "$HOOK_LOG"
[ "$step" = "${HOOK_WAIT_AT:-}" ] && while [ ! -e "$HOOK_LOG.go" ]; do sleep 0.02; done
[ "$step" = "${HOOK_FLOOD_AT:-}" ] && head -c 3000000 /dev/zero && head -c 3000000 /dev/zero >&2
[ "$step" = "${HOOK_SLEEP_AT:-}" ] && sleep 30
[ "$step" = "${HOOK_KILL_AT:-}" ] && kill -9 $$
[ "$step" = "${HOOK_FAIL_AT:-}" ] && exit 3
[ "$CLOUDCHAIN_USER" = "${HOOK_FAIL_USER:-}" ] && exit 4
exit 0
"""


@pytest.fixture
def hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hook.sh"
    path.write_text(HOOK)
    path.chmod(0o755)
    monkeypatch.setenv("HOOK_LOG", str(tmp_path / "calls"))
    return path


def _calls(hook: Path) -> list[str]:
    log = hook.parent / "calls"
    return log.read_text().splitlines() if log.exists() else []


def test_a_rotation_sets_tests_and_promotes_with_the_value_on_stdin_only(
    chain: CloudChain, hook: Path
) -> None:
    chain.save("billing", "alice", "old-pw")
    steps: list[tuple[str, int]] = []
    calls = CallCounter(chain._dynamodb, chain._kms)
    rotated = rotate(
        chain, "billing", "alice", "new-pw", Hook((str(hook),)), comment="q3",
        on_step=lambda step, version: steps.append((step, version)),
    )  # fmt: skip
    assert (rotated.version, rotated.previous_version, rotated.resumed) == (2, 1, False)
    assert steps == [("create", 2), ("set", 2), ("test", 2), ("finish", 2)]
    assert calls.count("PutItem") == 3  # lease, pending version, promote
    assert (hook.parent / "calls.stdin").read_bytes() == b"new-pw"  # exactly: no newline added
    # One argument (the step): the value came on stdin, and no variable held it.
    assert _calls(hook) == ["1 set billing alice 2 1 new-pw 0", "1 test billing alice 2 1 new-pw 0"]
    assert chain.read("billing", "alice") == "new-pw"
    assert chain.read("billing", "alice", stage="previous") == "old-pw"
    assert [(v.version, v.action, v.comment) for v in chain.history("billing", "alice")] == [
        (2, "promote", "q3"),
        (1, "save", None),
    ]
    assert rotate(chain, "billing", "alice", lambda: "third").version == 3  # no hook
    with pytest.raises(SecretNotFoundError):
        rotate(chain, "billing", "nobody", "x")


@pytest.mark.parametrize(
    ("setting", "step", "status"),
    [
        ("HOOK_FAIL_AT", "set", "exited with status 3"),
        ("HOOK_FAIL_AT", "test", "exited with status 3"),
        ("HOOK_KILL_AT", "set", "was killed by SIGKILL"),
        ("HOOK_SLEEP_AT", "test", "timed out and was killed"),
    ],
)
def test_a_failed_step_promotes_nothing_and_a_rerun_resumes(
    chain: CloudChain, hook: Path, monkeypatch: pytest.MonkeyPatch,
    setting: str, step: str, status: str,
) -> None:  # fmt: skip
    chain.save("billing", "alice", "old-pw")
    monkeypatch.setenv(setting, step)
    started = time.monotonic()
    with pytest.raises(HookFailedError) as failed:
        rotate(chain, "billing", "alice", "new-pw", Hook((str(hook),), timeout=0.5))
    assert time.monotonic() - started < 10
    message = str(failed.value)
    assert message.startswith(f"rotation step {step}: the hook {hook} {status};")
    assert "stays at version 1 and pending version 2 is kept" in message
    assert "pw" not in message and "\n" not in message
    assert failed.value.hint == "run --rotate again to resume, or --abort to give up"
    assert chain.read_versioned("billing", "alice").version == 1
    assert chain.read("billing", "alice", stage="pending") == "new-pw"
    monkeypatch.delenv(setting)
    rotated = rotate(chain, "billing", "alice", "never-used", Hook((str(hook),)))
    assert (rotated.version, rotated.resumed) == (2, True)  # the same pending version
    assert chain.read("billing", "alice") == "new-pw"
    assert _calls(hook)[-1] == "1 test billing alice 2 1 new-pw 0"


def test_a_hook_that_cannot_run_or_floods_its_output_promotes_nothing(
    chain: CloudChain, hook: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chain.save("billing", "alice", "old-pw")
    with pytest.raises(HookFailedError, match=r"step set: the hook /no/such/hook cannot be run"):
        rotate(chain, "billing", "alice", "new-pw", Hook(("/no/such/hook",)))
    monkeypatch.setenv("HOOK_FLOOD_AT", "test")
    monkeypatch.setenv("HOOK_FAIL_AT", "test")
    with pytest.raises(HookFailedError, match="step test"):
        rotate(chain, "billing", "alice", "new-pw", Hook((str(hook),)))
    assert chain.read_versioned("billing", "alice").version == 1
    assert chain._claim_rotation("billing", "alice", "next", 60) == (1, 2)  # lease given back


def test_two_rotations_at_once_one_proceeds_and_the_other_runs_no_hook(
    chain: CloudChain, hook: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain.save("billing", "alice", "old-pw")
    monkeypatch.setenv("HOOK_WAIT_AT", "set")
    first = threading.Thread(
        target=rotate, args=(chain, "billing", "alice", "first-pw", Hook((str(hook),)))
    )
    first.start()
    while not _calls(hook):
        time.sleep(0.02)
    with pytest.raises(RotationBusyError, match="being rotated by another run"):
        rotate(chain, "billing", "alice", "second-pw", Hook((str(hook),)))
    (hook.parent / "calls.go").touch()
    first.join(10)
    assert [line.split()[1] for line in _calls(hook)] == ["set", "test"]
    assert chain.read("billing", "alice") == "first-pw"


def test_ctrl_c_during_a_hook_promotes_nothing_and_gives_the_lease_back(
    chain: CloudChain, hook: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain.save("billing", "alice", "old-pw")

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt  # as run_bounded re-raises it, once it has killed the hook

    monkeypatch.setattr("cloudchain.rotation.run_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rotate(chain, "billing", "alice", "new-pw", Hook((str(hook),)))
    assert chain.read_versioned("billing", "alice").version == 1
    assert chain._claim_rotation("billing", "alice", "next", 60) == (1, 2)  # not held


def test_rotate_from_the_command_line(
    chain: CloudChain, hook: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    chain.save("billing", "alice", "old-pw")
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    (hook.parent / "calls.go").touch()  # a file that is not executable
    monkeypatch.setenv("CLOUDCHAIN_ENDPOINT_URL", "http://127.0.0.1:9")  # no AWS call may work

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        capsys.readouterr()
        stream = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
        monkeypatch.setattr(stream, "isatty", lambda: False)
        monkeypatch.setattr("sys.stdin", stream)
        code = main([*ROW, *args])
        out, err = capsys.readouterr()
        return code, out, err

    for bad, why in [
        (("--hook", "/no/such/hook"), "--hook: the hook /no/such/hook does not exist"),
        (("--hook", str(hook.parent)), "is not a file"),
        (("--hook", str(hook.parent / "calls.go")), "is not executable"),
        (("--hook", "no-such-program-here"), "is not found on PATH"),
        (("--hook", "'unclosed"), "--hook cannot be split"),
        (("--hook", str(hook), "--hook-timeout", "0s"), "--hook-timeout"),
        (("--hook-timeout", "5s"), "--hook-timeout goes with --hook"),
    ]:
        code, out, err = run("--rotate", *bad, stdin="new-pw\n")
        assert (code, out, err.count("\n")) == (2, "", 1), (bad, err)
        assert why in err
    monkeypatch.delenv("CLOUDCHAIN_ENDPOINT_URL")
    monkeypatch.setenv("HOOK_FAIL_AT", "set")
    code, out, err = run("--rotate", "--hook", f"{hook} --flag", stdin="new-pw\n")
    assert code == 1 and out == ""
    assert err.splitlines()[-2:] == [
        f"cchain: error: rotation step set: the hook {hook} exited with status 3; nothing was "
        "promoted; billing/alice stays at version 1 and pending version 2 is kept",
        "cchain: hint: run --rotate again to resume, or --abort to give up",
    ]
    assert _calls(hook) == ["2 set billing alice 2 1 new-pw 0"]  # after CMD's own argument
    monkeypatch.delenv("HOOK_FAIL_AT")
    code, out, err = run("--rotate", "--hook", str(hook), "--comment", "resume", stdin="other\n")
    assert (code, out) == (0, "2\n")
    assert "value given was not used" in err
    assert "rotated billing/alice to version 2 (was 1)" in err
    code, out, err = run("--rotate", stdin="hookless\n")
    assert (code, out) == (0, "3\n")
    assert run("--read")[1] == "hookless\n"


def test_rotate_generates_values_and_rotates_every_due_secret(
    chain: CloudChain, hook: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    monkeypatch.setattr("sys.stdin", None)  # no value is read: each is generated
    chain.save("billing", "alice", "old-pw")

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run(*ROW, "--rotate", "--generate", "--charset", "hex", "--length", "40",
                         "--show", "--hook", str(hook))  # fmt: skip
    version, value = out.splitlines()
    assert (code, version, len(value)) == (0, "2", 40), err
    assert value not in err and chain.read("billing", "alice") == value
    assert _calls(hook)[0] == f"1 set billing alice 2 1 {value} 0"

    for user in ("expired", "broken", "later"):
        chain.save("db", user, "v1", not_after="2020-01-01" if user != "later" else "2099-01-01")
    monkeypatch.setenv("HOOK_FAIL_USER", "broken")
    code, out, err = run("--rotate", "--due", "--generate", "--hook", str(hook))
    assert (code, out) == (1, "")
    assert "rotated db/expired to version 2 (was 1)" in err
    assert "warning: rotation step set: the hook" in err and "db/broken stays at version 1" in err
    assert err.splitlines()[-1] == "cchain: rotated 1, failed 1, skipped 0 of 2 due"
    assert chain.read_versioned("db", "expired").version == 2
    assert chain.read_versioned("db", "later").version == 1
    monkeypatch.delenv("HOOK_FAIL_USER")

    stopped = []

    def interrupted(hook: Hook, step: str, value: bytes, env: dict[str, str]) -> None:
        stopped.append(env["CLOUDCHAIN_USER"])
        raise KeyboardInterrupt

    monkeypatch.setattr("cloudchain.rotation.run_step", interrupted)
    chain.save("db", "second", "v1", not_after="2020-01-02")
    code, out, err = run("--rotate", "--due", "-e", "db", "--generate", "--hook", str(hook))
    assert (code, stopped) == (130, ["broken"])  # the longest overdue first; then it stops
    assert (
        "interrupted during db/broken (nothing promoted for it); rotated 0, failed 0, "
        "skipped 0, 1 not started" in err
    )
    assert chain.read_versioned("db", "second").version == 1
    # Stopped while the promote was in flight: it may have landed, and it is not called undone.

    def promote_interrupted(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(CloudChain, "promote", promote_interrupted)
    code, out, err = run("--rotate", "--due", "-e", "db", "--generate")
    assert code == 130 and "its promote was under way: --history shows whether it landed" in err

    for bad, why in [
        (("--rotate", "--due"), "add --generate"),
        (("--rotate", "--due", "-u", "x", "--generate"), "leave out -u/--user"),
        (("--rotate", "--due", "--generate", "--show"), "--show does not go with"),
        (("--rotate", "-e", "db", "--generate"), "needs -u/--user and -e/--service"),
        (("--rotate", "--due", "--generate", "--within", "1d"), "--within goes with --due"),
    ]:
        code, out, err = run(*bad)
        assert (code, out) == (2, ""), (bad, err)
        assert err.splitlines()[-1].startswith("cchain: error: ") and why in err
