"""Support for end-to-end tests: the installed cchain run as a subprocess against a moto server."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
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

    def client(self, name: str, region: str = "us-east-1") -> Any:
        """A raw botocore client for this endpoint in a region, built once each."""
        key = (self.url, name, region)
        if key not in _CLIENTS:
            _CLIENTS[key] = _SESSION.client(name, endpoint_url=self.url, region_name=region)  # type: ignore[call-overload]
        return _CLIENTS[key]


# Building clients loads botocore's models; share them across tests (the server is reset).
_SESSION = boto3.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
)
_CLIENTS: dict[tuple[str, str, str], Any] = {}


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


@dataclass
class Agent:
    process: subprocess.Popen[bytes]
    address: str  # unix:PATH or http://127.0.0.1:PORT
    token: str | None
    log: Path
    env: dict[str, str]  # for cchain: the emulator's, and CLOUDCHAIN_AGENT

    @property
    def socket_path(self) -> str:
        return self.address.removeprefix("unix:")

    def curl(
        self, path: str, *flags: str, token: str | None = ""
    ) -> tuple[int, dict[str, str], bytes]:
        """A request with curl; token "" means the agent's own (if any), None none at all."""
        args = ["curl", "-s", "-i", "--max-time", "20", *flags]
        token = self.token if token == "" else token
        if token is not None:
            args += ["-H", f"X-Cloudchain-Token: {token}"]
        if self.address.startswith("unix:"):
            args += ["--unix-socket", self.socket_path, f"http://localhost{path}"]
        else:
            args.append(f"{self.address}{path}")
        out = subprocess.run(args, capture_output=True, check=True, timeout=30).stdout
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return int(lines[0].split()[1]), headers, body

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)


@contextlib.contextmanager
def running_agent(
    emulator: Emulator, tmp_path: Path, *args: str, endpoint: str | None = None
) -> Iterator[Agent]:
    """cchain-agent on a socket (or TCP) of its own, configured by the environment."""
    out, log = tmp_path / "agent.out", tmp_path / "agent.log"
    env = {**emulator.env, "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    if endpoint:
        env["CLOUDCHAIN_ENDPOINT_URL"] = endpoint
    with out.open("wb") as stdout, log.open("wb") as stderr:
        process = subprocess.Popen(
            [str(BIN / "cchain-agent"), *args], stdout=stdout, stderr=stderr, env=env
        )
    try:
        settings = dict(
            line.removeprefix("export ").split("=", 1)
            for line in wait_for_text(out, "CLOUDCHAIN_AGENT=", process).splitlines()
            if line.startswith("export ")
        )
        token_file = settings.get("CLOUDCHAIN_AGENT_TOKEN_FILE")
        token = Path(token_file).read_text().strip() if token_file else None
        yield Agent(process, settings["CLOUDCHAIN_AGENT"], token, log,
                    {**emulator.env, **settings})  # fmt: skip
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)
