"""Changes reach running apps, end to end: the agent's /v1/watch long-poll, its refresh that
decrypts only what changed (KMS calls counted by a request-recording proxy), and
`cchain --exec --watch` restarting, signalling or leaving its child."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from support import BIN, Emulator, running_agent

from cloudchain.agent.client import AgentClient, AgentUnavailable


def _seed(emulator: Emulator, **values: str) -> None:
    result = emulator.run("-e", "web", "--import", "-", stdin=json.dumps(values))
    assert result.code == 0, result.err


def _metric(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " ") or
                x.startswith(name + "_total "))  # fmt: skip
    return float(line.split()[-1])


def _wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_agent_watch_long_polls_and_a_quiet_refresh_decrypts_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    _seed(emulator, a="1", b="1", c="1")
    port = int(emulator.url.rsplit(":", 1)[1])
    with FaultProxy(port) as proxy, running_agent(
        emulator, tmp_path, "--prefetch", "web", "--ttl", "2", "--listen", "127.0.0.1:0",
        "--max-workers", "2", "--max-connections", "8", endpoint=proxy.url,
    ) as agent:  # fmt: skip
        client = AgentClient(agent.address, agent.token)
        assert proxy.count("Decrypt") == 3
        token, changed = client.watch("web")
        assert token.isalnum() and not changed
        started = time.monotonic()
        assert client.watch("web", token, timeout=1.2) == (token, False)  # nothing changed
        assert time.monotonic() - started >= 1.1

        # Twelve watchers wait on the loop: no thread is held (two workers), and at the
        # connection cap (eight) a waiting watcher is closed to let a reader in.
        results: list[object] = []

        def watch() -> None:
            try:
                results.append(client.watch("web", token, timeout=20))
            except AgentUnavailable as gone:
                results.append(gone)

        watchers = [threading.Thread(target=watch) for _ in range(12)]
        for thread in watchers:
            thread.start()
        time.sleep(0.5)
        queries = proxy.count("Query")
        assert agent.curl("/v1/secret?service=other&user=x")[0] == 404  # a miss: a thread
        time.sleep(2.2)
        assert 1 <= proxy.count("Query") - queries <= 4  # a check a period, not one a watcher
        assert proxy.count("Decrypt") == 3  # and quiet periods make no KMS call
        assert emulator.run("-e", "web", "-u", "a", "--save", "-", stdin="2").code == 0
        for thread in watchers:
            thread.join(timeout=20)
        woken = [r for r in results if isinstance(r, tuple)]
        assert woken and all(r[1] is True and r[0] != token for r in woken)
        assert len(woken) + sum(isinstance(r, AgentUnavailable) for r in results) == 12
        assert proxy.count("Decrypt") == 3 + 1  # only the secret that changed
        assert agent.curl("/v1/secret?service=web&user=a")[2] == b"2"
        metrics = agent.curl("/metrics")[2].decode()
        assert _metric(metrics, "cloudchain_agent_kms_calls") == 4
        assert _metric(metrics, "cloudchain_agent_changes_seen") == 1
        assert _metric(metrics, "cloudchain_agent_change_checks") >= 3
        # Like every endpoint: the token, and a since the agent could have given.
        assert agent.curl("/v1/watch?service=web", token=None)[0] == 403
        assert agent.curl("/v1/watch?service=web&since=x%2Fy")[0] == 400
        assert agent.curl("/v1/watch?service=web&since=abc&timeout=0")[0] == 400


def _child(out: Path, script: str) -> list[str]:
    return ["--", "sh", "-c", script, "child", str(out)]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _start(emulator: Emulator, *args: str, env: dict[str, str] | None = None,
           err: Path) -> subprocess.Popen[bytes]:  # fmt: skip
    with err.open("wb") as stderr:
        return subprocess.Popen([str(BIN / "cchain"), "-e", "web", "--exec", "--watch", *args],
                                env={**emulator.env, **(env or {})}, stderr=stderr)  # fmt: skip


def test_exec_watch_through_the_agent_restarts_once_per_burst(
    emulator: Emulator, tmp_path: Path
) -> None:
    _seed(emulator, a="1", b="1")
    out, err = tmp_path / "out", tmp_path / "err"
    with running_agent(emulator, tmp_path, "--prefetch", "web", "--ttl", "2") as agent:
        cchain = _start(emulator, "--grace", "2s",
                        *_child(out, 'echo "start $$ $A $B" >> "$1"; exec sleep 600'),
                        env=agent.env, err=err)  # fmt: skip
        _wait_for(lambda: len(_lines(out)) == 1)
        _seed(emulator, a="2", b="2")  # one burst: two users
        _wait_for(lambda: len(_lines(out)) == 2)
        time.sleep(2.5)  # nothing more comes of the burst
        first, second = _lines(out)
        assert first.split()[2:] == ["1", "1"] and second.split()[2:] == ["2", "2"]
        pid = int(second.split()[1])
        cchain.send_signal(signal.SIGINT)  # not from a terminal: forwarded
        assert cchain.wait(timeout=10) == 130
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert err.read_text().count("restarting") == 1, err.read_text()


def test_exec_watch_signal_mode_forwards_signals_and_exits_with_the_childs_status(
    emulator: Emulator, tmp_path: Path
) -> None:
    _seed(emulator, a="1")
    out, err = tmp_path / "out", tmp_path / "err"
    script = ('trap "echo hup >> \\"$1\\"" HUP; trap "echo usr1 >> \\"$1\\"" USR1; '
              'echo "start $A" >> "$1"; while :; do sleep 0.05; done')  # fmt: skip
    cchain = _start(emulator, "--on-change", "signal:HUP", "--interval", "300ms",
                    *_child(out, script), err=err)  # fmt: skip
    _wait_for(lambda: _lines(out) == ["start 1"])
    cchain.send_signal(signal.SIGUSR1)
    _wait_for(lambda: "usr1" in _lines(out))
    assert emulator.run("-e", "web", "-u", "a", "--save", "-", stdin="2").code == 0
    _wait_for(lambda: "hup" in _lines(out))
    time.sleep(1)
    assert _lines(out) == ["start 1", "usr1", "hup"]  # signalled once, never restarted
    cchain.send_signal(signal.SIGTERM)
    assert cchain.wait(timeout=10) == 128 + signal.SIGTERM  # the child died of it
    own = emulator.run("-e", "web", "--exec", "--watch", "--", "sh", "-c", "exit 3")
    assert own.code == 3, own.err


def test_exec_watch_exit_mode_kills_a_child_that_ignores_sigterm(
    emulator: Emulator, tmp_path: Path
) -> None:
    _seed(emulator, a="1")
    out, err = tmp_path / "out", tmp_path / "err"
    cchain = _start(emulator, "--on-change", "exit", "--interval", "300ms", "--grace", "500ms",
                    *_child(out, 'trap "" TERM; echo "start $$" >> "$1"; exec sleep 600'),
                    err=err)  # fmt: skip
    _wait_for(lambda: len(_lines(out)) == 1)
    pid = int(_lines(out)[0].split()[1])
    assert emulator.run("-e", "web", "-u", "a", "--save", "-", stdin="2").code == 0
    assert cchain.wait(timeout=15) == 75, err.read_text()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "exiting 75" in err.read_text()


def test_exec_watch_keeps_the_child_while_aws_is_down_and_warns_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    _seed(emulator, a="1")
    out, err = tmp_path / "out", tmp_path / "err"
    failing: list[bool] = []
    port = int(emulator.url.rsplit(":", 1)[1])
    with FaultProxy(port, lambda op, n, body: "drop" if failing else "forward") as proxy:
        cchain = _start(emulator, "--interval", "200ms",
                        *_child(out, 'echo "start $A" >> "$1"; exec sleep 600'),
                        env={"CLOUDCHAIN_ENDPOINT_URL": proxy.url, "CLOUDCHAIN_MAX_ATTEMPTS": "1"},
                        err=err)  # fmt: skip
        _wait_for(lambda: len(_lines(out)) == 1 or cchain.poll() is not None)
        assert cchain.poll() is None, err.read_text()
        failing.append(True)
        time.sleep(1.5)  # several checks fail
        assert cchain.poll() is None and _lines(out) == ["start 1"]
        failing.clear()
        _wait_for(lambda: "checking web again" in err.read_text())
        cchain.send_signal(signal.SIGTERM)
        assert cchain.wait(timeout=10) == 128 + signal.SIGTERM
    assert err.read_text().count("cchain: warning: cannot check web") == 1, err.read_text()


def test_exec_watch_ctrl_c_at_a_terminal_reaches_the_child_once_and_exits_130(
    emulator: Emulator, tmp_path: Path
) -> None:
    _seed(emulator, a="1")
    out = tmp_path / "out"
    script = ('trap "echo int >> \\"$1\\"" INT; echo start >> "$1"; '
              "while :; do sleep 0.05; done")  # fmt: skip
    master, slave = os.openpty()
    process = subprocess.Popen(
        ["setsid", "--ctty", str(BIN / "cchain"), "-e", "web", "--exec", "--watch",
         "--grace", "500ms", *_child(out, script)],
        stdin=slave, stdout=slave, stderr=slave, env=emulator.env,
    )  # fmt: skip
    os.close(slave)
    try:
        _wait_for(lambda: _lines(out) == ["start"])
        os.write(master, b"\x03")  # Ctrl-C: SIGINT to the terminal's foreground group
        assert process.wait(timeout=15) == 130
        # The child got SIGINT (it shares cchain's process group), trapped it, and was
        # killed after the grace period: nothing is left running.
        assert _lines(out) == ["start", "int"]
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
