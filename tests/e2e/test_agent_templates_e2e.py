"""cchain-agent's templates end to end: the real agent against cchain-local, changed by cchain."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from support import BIN, Emulator, running_agent, wait_for_text


def _wait_until(check: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _metric(text: str, name: str, template: str) -> float:
    wanted = f'{name}{{template="{template}"}}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(wanted))


def test_a_save_rewrites_the_file_and_runs_its_command_once(
    local_emulator: Emulator, tmp_path: Path
) -> None:
    em = local_emulator
    assert em.run("-u", "db", "-e", "web", "--save", "-", stdin="first-value").code == 0
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "app.j2").write_text('password = {{ secret("web", "db") }}\n')
    (tmp_path / "hang.j2").write_text('{{ secret("web", "db") | length }}\n')
    ran = tmp_path / "ran"
    config = tmp_path / "agent.rc"
    config.write_text(
        "[template app]\nsource = app.j2\ndestination = out/app.conf\nmode = 0640\n"
        f"command = sh -c 'echo \"$CLOUDCHAIN_TEMPLATE_DESTINATION\" >> {ran}'\nwait = 50ms:200ms\n"
        # A command that floods its output, then hangs: killed at its timeout.
        "[template hang]\nsource = hang.j2\ndestination = out/hang.txt\n"
        "command = sh -c 'head -c 2000000 /dev/zero; sleep 60'\ncommand_timeout = 500ms\n"
    )
    with running_agent(em, tmp_path, "--config", str(config), "--ttl", "1") as agent:
        app = out / "app.conf"
        _wait_until(lambda: ran.exists())
        assert app.read_text() == "password = first-value\n"
        assert app.stat().st_mode & 0o777 == 0o640
        assert ran.read_text() == f"{app}\n"
        assert em.run("-u", "db", "-e", "web", "--save", "-", stdin="second-value").code == 0
        wait_for_text(app, "second-value", agent.process)
        _wait_until(lambda: ran.read_text().count("\n") >= 2)
        _wait_until(  # more checks with nothing changed: no write, no command
            lambda: _metric(agent.curl("/metrics")[2].decode(),
                            "cloudchain_agent_template_skipped_total", "app") >= 2
        )  # fmt: skip
        assert ran.read_text() == f"{app}\n{app}\n"
        assert sorted(p.name for p in out.iterdir()) == ["app.conf", "hang.txt"]  # no temporary
        _wait_until(lambda: "template hang: command timed out" in agent.log.read_text())
        assert agent.curl("/healthz")[0] == 200  # the agent served on while it hung
        metrics = agent.curl("/metrics")[2].decode()
        assert _metric(metrics, "cloudchain_agent_template_renders_total", "app") == 2
        assert _metric(metrics, "cloudchain_agent_template_skipped_total", "app") >= 2
        assert _metric(metrics, "cloudchain_agent_template_command_failures_total", "hang") >= 1
        assert _metric(metrics, "cloudchain_agent_template_render_errors_total", "app") == 0
        assert agent.stop() == 0
    log = agent.log.read_text()
    assert "first" not in log and "second" not in log  # no value, nor part of one
    assert "Traceback" not in log


def test_sigterm_during_a_command_exits_cleanly_with_the_whole_file(
    emulator: Emulator, tmp_path: Path
) -> None:
    em = emulator
    assert em.run("-u", "db", "-e", "web", "--save", "-", stdin="s" * 100).code == 0
    (tmp_path / "t.j2").write_text('{{ secret("web", "db") * 1000 }}\n')
    started = tmp_path / "started"
    config = tmp_path / "agent.rc"
    config.write_text(
        "[template slow]\nsource = t.j2\ndestination = out.txt\ncommand_timeout = 20s\n"
        f"command = sh -c 'sleep 30 & echo $! > {started}; wait'\n"
    )
    with running_agent(em, tmp_path, "--config", str(config)) as agent:
        _wait_until(lambda: started.exists() and started.read_text().strip())
        sleeper = Path(f"/proc/{started.read_text().strip()}")  # the command's own child
        assert sleeper.exists()
        agent.process.send_signal(signal.SIGTERM)
        assert agent.process.wait(timeout=5) == 0  # the command killed, not awaited
    assert (tmp_path / "out.txt").read_text() == "s" * 100_000 + "\n"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    _wait_until(lambda: not sleeper.exists(), timeout=5)  # its whole group was killed
    # --once too: SIGTERM during its command unwinds, killing the group, the file whole.
    started.unlink()
    assert em.run("-u", "db", "-e", "web", "--save", "-", stdin="t" * 100).code == 0
    once = subprocess.Popen([str(BIN / "cchain-agent"), "--once", "--config", str(config)],
                            env=em.env, stderr=subprocess.PIPE)  # fmt: skip
    _wait_until(lambda: started.exists() and started.read_text().strip())
    sleeper = Path(f"/proc/{started.read_text().strip()}")
    once.send_signal(signal.SIGTERM)
    assert once.wait(timeout=5) == 128 + signal.SIGTERM
    assert b"Traceback" not in once.communicate()[1]
    assert (tmp_path / "out.txt").read_text() == "t" * 100_000 + "\n"
    _wait_until(lambda: not sleeper.exists(), timeout=5)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_once_renders_then_exits_0_or_1_keeping_the_last_file(
    emulator: Emulator, tmp_path: Path
) -> None:
    em = emulator
    assert em.run("-u", "db", "-e", "web", "--save", "-", stdin="v1").code == 0
    (tmp_path / "good.j2").write_text('{{ secret("web", "db") }}')
    (tmp_path / "bad.j2").write_text('{{ secret("web", "nobody") }}')
    dest = tmp_path / "good.txt"
    ok = em.run("--once", "--template", f"{tmp_path}/good.j2:{dest}", program="cchain-agent")
    assert (ok.code, dest.read_text(), oct(dest.stat().st_mode & 0o777)) == (0, "v1", "0o600")
    assert ok.out == ""  # nothing served, nothing to point clients at
    bad_dest = tmp_path / "bad.txt"
    bad_dest.write_text("last good")
    both = em.run("--once", "--template", f"{tmp_path}/good.j2:{dest}",
                  "--template", f"{tmp_path}/bad.j2:{bad_dest}", program="cchain-agent")  # fmt: skip
    assert both.code == 1
    assert bad_dest.read_text() == "last good"
    lines = both.err.splitlines()
    assert len(lines) == 1 and f"template {bad_dest}: not rendered" in lines[0], both.err
    assert "nobody" in lines[0] and "v1" not in lines[0]
    missing = em.run("--once", "--template", f"{tmp_path}/good.j2:{tmp_path}/no/such.txt",
                     program="cchain-agent")  # fmt: skip
    assert missing.code == 2
    assert missing.err == (
        f"cchain-agent: error: template {tmp_path}/no/such.txt: directory {tmp_path}/no "
        "does not exist\n"
    )


def test_a_directory_the_agent_cannot_write_is_refused_at_start(emulator: Emulator) -> None:
    from users import as_user, other_user

    shared = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        shared.chmod(0o755)
        (shared / "t.j2").write_text("plain")
        with other_user() as (uid, gid, home):
            done = subprocess.run(
                as_user(uid, gid, str(BIN / "cchain-agent"), "--once", "--template",
                        f"{shared}/t.j2:{shared}/out"),
                capture_output=True, text=True, timeout=60, env={**emulator.env, "HOME": str(home)},
            )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr == (
            f"cchain-agent: error: template {shared}/out: directory {shared} is not writable\n"
        )
        assert sorted(os.listdir(shared)) == ["t.j2"]
    finally:
        shutil.rmtree(shared)
