"""--rotate end to end: the installed cchain, a real hook script, cchain-local, the agent, and
a reply lost on promote."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from helpers import KEY_ALIAS
from support import BIN, Emulator, running_agent

from cloudchain import CloudChain

pytestmark = pytest.mark.e2e

ROW = ("-u", "app", "-e", "postgres")
# Records each call (its step, the versions, the value from stdin); fails at $HOOK_FAIL_AT;
# at $HOOK_WAIT_AT waits for the file $HOOK_LOG.go.
HOOK = r"""#!/bin/sh
for step; do :; done
value=$(cat)
echo "$step $CLOUDCHAIN_VERSION $CLOUDCHAIN_CURRENT_VERSION $value" >> "$HOOK_LOG"
echo "hook: $step ran"
[ "$step" = "${HOOK_WAIT_AT:-}" ] && while [ ! -e "$HOOK_LOG.go" ]; do sleep 0.02; done
[ "$step" = "${HOOK_FAIL_AT:-}" ] && { echo "hook: $step refused" >&2; exit 7; }
exit 0
"""


@pytest.fixture
def hook(tmp_path: Path) -> Path:
    path = tmp_path / "rotate-hook"
    path.write_text(HOOK)
    path.chmod(0o755)
    return path


def _chain(emulator: Emulator) -> CloudChain:
    return CloudChain(endpoint_url=emulator.env["CLOUDCHAIN_ENDPOINT_URL"], keyalias=KEY_ALIAS)


def test_rotation_steps_with_a_hook_script_against_cchain_local(
    local_emulator: Emulator, hook: Path
) -> None:
    log = hook.parent / "calls"
    env = {"HOOK_LOG": str(log)}
    direct = _chain(local_emulator)  # checks in-process: a subprocess costs half a second
    direct.save("postgres", "app", "pw-1")

    failed = local_emulator.run(*ROW, "--rotate", "--hook", str(hook), "--comment", "q3",
                                stdin="pw-2", env={**env, "HOOK_FAIL_AT": "test"})  # fmt: skip
    assert failed.code == 1 and failed.out == ""
    errors = [line for line in failed.err.splitlines() if line.startswith("cchain: error")]
    assert errors == [
        f"cchain: error: rotation step test: the hook {hook} exited with status 7; nothing was "
        "promoted; postgres/app stays at version 1 and pending version 2 is kept"
    ]
    assert "hook: test refused" in failed.err  # the hook's own output passes through
    assert "hook: set ran" in failed.err  # its stdout too, onto stderr: stdout is cchain's
    assert "pw-2" not in failed.err
    assert direct.read("postgres", "app") == "pw-1"

    resumed = local_emulator.run(*ROW, "--rotate", "--hook", str(hook), stdin="pw-3", env=env)
    assert (resumed.code, resumed.out) == (0, "2\n"), resumed.err
    assert log.read_text().splitlines() == [
        "set 2 1 pw-2", "test 2 1 pw-2", "set 2 1 pw-2", "test 2 1 pw-2"
    ]  # fmt: skip
    assert direct.read("postgres", "app") == "pw-2"
    assert direct.read("postgres", "app", stage="previous") == "pw-1"

    # Two at once: exactly one runs its hook and promotes; the other exits 4 before its hook.
    log.unlink()
    racing = [
        subprocess.Popen(
            [str(BIN / "cchain"), *ROW, "--rotate", "--hook", str(hook)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**local_emulator.env, **env, "HOOK_WAIT_AT": "set"},
        )
        for _ in range(2)
    ]  # fmt: skip
    for n, proc in enumerate(racing):
        assert proc.stdin is not None
        proc.stdin.write(f"pw-race-{n}".encode())
        proc.stdin.close()
    deadline = time.monotonic() + 30
    while all(p.poll() is None for p in racing) and time.monotonic() < deadline:
        time.sleep(0.02)
    loser = next(p for p in racing if p.poll() is not None)
    (hook.parent / "calls.go").touch()
    winner = next(p for p in racing if p is not loser)
    assert (loser.returncode, winner.wait(30)) == (4, 0)
    assert loser.stderr is not None and b"being rotated by another run" in loser.stderr.read()
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["set", "test"]
    history = direct.history("postgres", "app")
    assert [(v.version, v.action, v.stage) for v in history] == [
        (3, "promote", "current"), (2, "promote", "previous"), (1, "save", None)
    ]  # fmt: skip

    direct.save("postgres", "app", "pw-bad", stage="pending")
    aborted = local_emulator.run(*ROW, "--abort", "--comment", "db said no")
    assert aborted.code == 0 and "discarded pending version 4" in aborted.err
    assert [(v.version, v.action, v.comment) for v in direct.history("postgres", "app")][1] == (
        4, "abort", "db said no"
    )  # fmt: skip


class LosePromoteReply:
    """A proxy policy: the first promote goes through and its reply is lost."""

    def __init__(self) -> None:
        self.lost = 0

    def __call__(self, operation: str, count: int, body: bytes) -> str:
        if operation == "PutItem" and b'"promote"' in body and not self.lost:
            self.lost += 1
            return "lose-reply"
        return "forward"


def test_a_lost_reply_on_promote_still_reports_the_promotion(emulator: Emulator) -> None:
    direct = _chain(emulator)
    direct.save("postgres", "app", "pw-1")
    direct.save("postgres", "app", "pw-2", stage="pending")
    policy = LosePromoteReply()
    with FaultProxy(int(emulator.url.rsplit(":", 1)[1]), policy) as proxy:
        lossy = Emulator(proxy.url, {**emulator.env, "CLOUDCHAIN_ENDPOINT_URL": proxy.url})
        result = lossy.run(*ROW, "--promote", "--expect-version", "1")
    assert policy.lost == 1 and proxy.counts["PutItem"] >= 2  # botocore sent it again
    assert (result.code, result.out) == (0, "2\n"), result.err
    assert [v.version for v in direct.history("postgres", "app")] == [2, 1]
    assert direct.read("postgres", "app") == "pw-2"


def test_the_agent_serves_stages_apart_and_is_refreshed_by_a_rotation(
    emulator: Emulator, tmp_path: Path
) -> None:
    _chain(emulator).save("postgres", "app", "pw-1")
    with running_agent(emulator, tmp_path) as agent:
        current = "/v1/secret?service=postgres&user=app"
        assert agent.curl(current)[2] == b"pw-1"
        staged = emulator.run(*ROW, "--save", "-", "--stage", "pending", stdin="pw-2",
                              env=agent.env)  # fmt: skip
        assert staged.code == 0, staged.err
        assert agent.curl(current)[2] == b"pw-1"  # never the pending one
        status, headers, body = agent.curl(current + "&stage=pending")
        assert (status, body, headers["x-cloudchain-version"]) == (200, b"pw-2", "2")
        assert agent.curl(current + "&stage=bogus")[0] == 400
        rotated = emulator.run(*ROW, "--rotate", stdin="unused", env=agent.env)
        assert rotated.code == 0 and "warning: the agent" not in rotated.err, rotated.err
        assert agent.curl(current)[2] == b"pw-2"  # refreshed at once
        assert agent.curl(current + "&stage=previous")[2] == b"pw-1"
