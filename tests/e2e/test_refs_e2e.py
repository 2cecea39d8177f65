"""cchain:// references with the installed cchain as a container's entrypoint against a moto
server: values in place, ?dest files (0600, in a private directory) that are gone once the
command exits or once cchain is sent SIGTERM, signals passed on, and the exit status kept."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import KEY_ALIAS
from support import BIN, Emulator, wait_for_text

from cloudchain import CloudChain

pytestmark = pytest.mark.e2e

KEY = "-----BEGIN KEY-----\nabc'$HOME\n-----END KEY-----\n"
CERT = b"\x00\x01\xffder"
REPORT = """
import json, os, stat, sys
report = {name: os.environ.get(name) for name in ("DB", "TOKEN", "REGION", "TLS_KEY", "CERT")}
for name in ("TLS_KEY", "CERT"):
    path = os.environ[name]
    report[name + "_mode"] = oct(stat.S_IMODE(os.stat(path).st_mode))
    report[name + "_dir_mode"] = oct(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode))
    report[name + "_content"] = open(path, "rb").read().hex()
print(json.dumps(report))
sys.exit(5)
"""


@pytest.fixture
def seeded(emulator: Emulator, tmp_path: Path) -> Emulator:
    chain = CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS)
    chain.import_secrets("app", {"db": "hunter2", "token": "a"})
    chain.import_secrets("tls", {"key": KEY, "cert": CERT})
    chain.import_secrets("common", {"token": "common-token", "region": "eu-west-1"})
    emulator.env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    return emulator


def test_exec_as_the_entrypoint_of_a_script_resolves_references_and_removes_its_files(
    seeded: Emulator, tmp_path: Path
) -> None:
    CloudChain(endpoint_url=seeded.url, keyalias=KEY_ALIAS).save("app", "db", "hunter3")
    # As in a Dockerfile: ENTRYPOINT ["cchain", "-e", "app", "-e", "common", "--exec", "--"]
    entrypoint = tmp_path / "entrypoint.sh"
    entrypoint.write_text(f'#!/bin/sh\nexec {BIN}/cchain -e app -e common --exec -- "$@"\n')
    entrypoint.chmod(0o755)
    cert_path = tmp_path / "certs" / "cert.der"
    cert_path.parent.mkdir()
    references = {
        "DB": "cchain://app/db?version=1",
        "TLS_KEY": "cchain://tls/key?dest=file",
        "CERT": f"cchain://tls/cert?dest={cert_path}",
    }
    result = seeded.run(sys.executable, "-c", REPORT, program=str(entrypoint), env=references)
    assert result.code == 5, result.err
    report = json.loads(result.out)
    # The reference, pinned to version 1, wins over service app's current db.
    assert (report["DB"], report["TOKEN"], report["REGION"]) == (
        "hunter2",
        "common-token",
        "eu-west-1",
    )
    assert result.err == (
        "cchain: warning: TOKEN from service common overrides the one from service app\n"
        "cchain: warning: DB: the cchain:// reference in the environment wins over the secret "
        "of service app\n"
    )
    assert report["CERT"] == str(cert_path)
    assert Path(report["TLS_KEY"]).parent.parent == tmp_path / "tmp"
    assert report["TLS_KEY_mode"] == report["CERT_mode"] == "0o600"
    assert report["TLS_KEY_dir_mode"] == "0o700"
    assert bytes.fromhex(report["TLS_KEY_content"]).decode() == KEY
    assert bytes.fromhex(report["CERT_content"]) == CERT
    # The command has exited: its files, and the private directory, are gone.
    assert not cert_path.exists() and list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("script", "code"),
    [
        ('echo "$KEY" > "$READY"; exec sleep 60', 128 + signal.SIGTERM),
        ("trap 'echo \"$KEY\" > \"$READY.term\"; exit 7' TERM; echo \"$KEY\" > \"$READY\"; "
         "while :; do sleep 0.05; done", 7),
    ],
    ids=["killed", "trapped"],
)  # fmt: skip
def test_sigterm_to_cchain_reaches_the_command_and_its_files_are_removed(
    seeded: Emulator, tmp_path: Path, script: str, code: int
) -> None:
    ready = tmp_path / "ready"
    env = {**seeded.env, "KEY": "cchain://tls/key?dest=file", "READY": str(ready)}
    proc = subprocess.Popen(
        [str(BIN / "cchain"), "--exec", "--", "sh", "-c", script], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        key_path = Path(wait_for_text(ready, "\n", proc).strip())
        assert key_path.read_text() == KEY
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert (proc.returncode, out, err) == (code, b"", b"")
    if code == 7:  # the command saw the signal, with its file still there
        assert (tmp_path / "ready.term").read_text().strip() == str(key_path)
    assert not key_path.exists() and list((tmp_path / "tmp").iterdir()) == []
