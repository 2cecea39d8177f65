"""cchain-local and the demo, run as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import BIN, REPO, Emulator, exported_settings, wait_for_text

pytestmark = pytest.mark.e2e


def test_cchain_local_serves_provisions_and_stops_on_sigterm(
    emulator: Emulator, tmp_path: Path
) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    env = {k: v for k, v in emulator.env.items() if not k.startswith("CLOUDCHAIN_")}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(BIN / "cchain-local"), "--port", "0"], stdout=stdout, stderr=stderr, env=env
        )
        try:
            text = wait_for_text(out, "export AWS_ACCESS_KEY_ID", proc)
            settings = exported_settings(text)
            assert settings["CLOUDCHAIN_KEY_ALIAS"] == "alias/cloudchain-local"
            assert settings["CLOUDCHAIN_TABLE"] == "safedb"
            assert settings["CLOUDCHAIN_ENDPOINT_URL"].startswith("http://127.0.0.1:")
            assert "[dynamo]" in text
            assert f"endpoint_url = {settings['CLOUDCHAIN_ENDPOINT_URL']}" in text
            local = Emulator(settings["CLOUDCHAIN_ENDPOINT_URL"], {**env, **settings})
            assert local.run("-u", "a", "-e", "s", "--save", "-", stdin="local").code == 0
            assert local.run("-u", "a", "-e", "s", "--read").out == "local\n"
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=15)
    assert code == 0
    assert "in memory" in err.read_text()


def test_cchain_local_uses_the_configured_alias_and_table(
    emulator: Emulator, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in emulator.env.items() if not k.startswith("CLOUDCHAIN_")}
    env["CLOUDCHAIN_KEY_ALIAS"] = "alias/mine"
    (Path(env["HOME"]) / ".cchainrc").write_text("[dynamo]\ntablename = mytable\n")
    with out.open("wb") as stdout:
        proc = subprocess.Popen(
            [str(BIN / "cchain-local"), "--port", "0"],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            text = wait_for_text(out, "export AWS_ACCESS_KEY_ID", proc)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    assert "keyalias = alias/mine" in text
    assert "tablename = mytable" in text


def test_cchain_local_on_a_busy_port_exits_1(emulator: Emulator) -> None:
    port = emulator.url.rsplit(":", 1)[1]
    result = emulator.run("--port", port, program="cchain-local", timeout=30)
    assert result.code == 1
    assert result.err.startswith("cchain-local: error: cannot listen")


def test_cchain_local_without_moto_exits_1_with_a_hint(emulator: Emulator) -> None:
    code = (
        "import sys; sys.modules['moto'] = None; sys.modules['moto.server'] = None\n"
        "from cloudchain.local import main; sys.exit(main(['--port', '0']))"
    )
    result = emulator.run("-c", code, program="python")
    assert result.code == 1
    assert result.err == (
        "cchain-local: error: the emulator needs moto; install it with: "
        "pip install 'cloudchain[local]'\n"
    )


def test_demo_runs_end_to_end(emulator: Emulator) -> None:
    env = {**emulator.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", str(REPO / "demo" / "demo.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "correct horse battery staple\n" in proc.stdout
    assert '"Secret": {' in proc.stdout
    assert "(exit status 3: 3 means not found)" in proc.stdout


def test_demo_uses_the_interpreter_of_this_venv() -> None:
    assert Path(sys.executable).parent == BIN


def test_the_emulator_says_who_is_calling(local_emulator: Emulator) -> None:
    assert local_emulator.run("-u", "u", "-e", "s", "--save", "-", stdin="x").code == 0
    history = local_emulator.run("-u", "u", "-e", "s", "--history").out
    assert history.split("\t")[2] == "arn:aws:sts::123456789012:user/moto"


def test_every_quickstart_command_prints_what_the_readme_shows(emulator: Emulator) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    console = section.split("```console\n", 1)[1].split("```", 1)[0]
    python = section.split("```python\n", 1)[1].split("```", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    for line in console.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    assert len(steps) >= 5
    env = {**emulator.env, "PATH": f"{BIN}:{os.environ['PATH']}"}
    for command, expected in steps:
        proc = subprocess.run(
            ["bash", "-c", command + " 2>&1"], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0, (command, proc.stdout)
        assert proc.stdout.splitlines() == expected, command
    ran = subprocess.run([str(BIN / "python"), "-c", python], capture_output=True, text=True,
                         env=env)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
