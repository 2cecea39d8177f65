"""The export formats for other tools through the agent: cchain fetches json from the agent and
writes them itself, exactly as the direct path does, and still never imports botocore."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from github_env import read_github_env
from helpers import KEY_ALIAS
from support import BIN, Emulator, running_agent

from cloudchain import CloudChain
from cloudchain.cli import main

pytestmark = pytest.mark.e2e

FORMATS = ("yaml", "k8s", "properties", "tfvars", "github")
# Every format in one process: its output, and whether boto3 or botocore was ever imported.
EXPORT_ALL = f"""
import io, json, sys
from cloudchain.cli import main
results = {{}}
for fmt in {FORMATS!r}:
    sys.stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    code = main(["-e", "billing", "--export", "--format", fmt, "--binary", "base64"])
    sys.stdout.flush()
    results[fmt] = [code, sys.stdout.buffer.getvalue().decode()]
sys.stdout = sys.__stdout__
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore"))
print(json.dumps({{"results": results, "loaded": loaded}}))
"""


def test_formats_through_the_agent_match_the_direct_path_without_botocore(
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    chain = CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS)
    chain.save("billing", "alice", "hunter3")
    chain.save("billing", "pem", "-----BEGIN-----\nabc\n-----END-----\n")
    chain.save("billing", "cert", b"\x00\x01\xff")
    for name in ("CLOUDCHAIN_ENDPOINT_URL", "CLOUDCHAIN_KEY_ALIAS"):
        monkeypatch.setenv(name, emulator.env[name])
    direct = {}  # in this process, straight from AWS (the emulator)
    for fmt in FORMATS:
        code = main(["-e", "billing", "--export", "--format", fmt, "--binary", "base64"])
        direct[fmt] = (code, capsys.readouterr().out)
    with running_agent(emulator, tmp_path) as agent:
        proc = subprocess.run(
            [str(BIN / "python"), "-c", EXPORT_ALL],
            capture_output=True, text=True, env=agent.env, cwd=tmp_path,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["loaded"] == []
    for fmt in FORMATS:
        (code_a, out_a), (code_b, out_b) = direct[fmt], answer["results"][fmt]
        assert code_a == code_b == 0, fmt
        if fmt == "github":  # a random delimiter for each value, each run
            assert read_github_env(str(out_a)) == read_github_env(str(out_b))
            assert set(read_github_env(str(out_b))) == {"ALICE", "CERT_B64", "PEM"}
        else:
            assert out_a == out_b, fmt
