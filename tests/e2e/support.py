"""Support for end-to-end tests: the installed cchain run as a subprocess against a moto server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Result:
    code: int
    out: str
    err: str
    raw_out: bytes = field(repr=False, default=b"")


@dataclass
class Emulator:
    """A moto server reset for one test, with the table and key created."""

    url: str
    env: dict[str, str]
    # The process serving url, when the test owns it (cchain-local).
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def run(
        self,
        *args: str,
        stdin: bytes | str | None = None,
        env: dict[str, str] | None = None,
        program: str = "cchain",
        timeout: float = 60,
    ) -> Result:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        proc = subprocess.run(
            [str(BIN / program), *args],
            input=data if data is not None else b"",
            capture_output=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
        )
        return Result(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
            proc.stdout,
        )

    def client(self, name: str) -> Any:
        """A raw botocore client for this endpoint, built once per endpoint and service."""
        key = (self.url, name)
        if key not in _CLIENTS:
            _CLIENTS[key] = _SESSION.client(name, endpoint_url=self.url)  # type: ignore[call-overload]
        return _CLIENTS[key]


# Building clients loads botocore's models; share them across tests (the server is reset).
_SESSION = boto3.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
)
_CLIENTS: dict[tuple[str, str], Any] = {}


def wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> str:
    """Wait until a process has written text to the file at path; return the file's content."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        assert proc.poll() is None, f"exited early with {proc.returncode}"
        time.sleep(0.05)
    raise AssertionError(f"{text!r} did not appear in {path}")


def exported_settings(text: str) -> dict[str, str]:
    """Return the CLOUDCHAIN_* variables from cchain-local's `export` lines."""
    return dict(
        line.removeprefix("export ").split("=", 1)
        for line in text.splitlines()
        if line.startswith("export CLOUDCHAIN_")
    )
