"""Benchmark helpers for cchain-agent: run one, load it with wrk, read its peak memory."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunningAgent:
    process: subprocess.Popen[bytes]
    settings: dict[str, str]  # the export lines it printed

    def peak_kib(self) -> int:
        """The agent's peak resident memory (VmHWM), in KiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"^VmHWM:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]


@contextlib.contextmanager
def agent(program: str, env: dict[str, str], *args: str, folder: Path) -> Iterator[RunningAgent]:
    """Run cchain-agent until the block ends; wait until it prints where it listens."""
    out = folder / f"agent-{time.monotonic_ns()}.out"
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            [program, *args], stdout=stdout, stderr=subprocess.DEVNULL, env=env
        )
    try:
        deadline = time.monotonic() + 120  # a prefetch of many secrets takes a while
        while "CLOUDCHAIN_AGENT=" not in out.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"cchain-agent did not start ({process.poll()})")
            time.sleep(0.05)
        time.sleep(0.2)  # the token file line follows the address line
        settings = dict(
            line.removeprefix("export ").split("=", 1)
            for line in out.read_text().splitlines()
            if line.startswith("export ")
        )
        yield RunningAgent(process, settings)
    finally:
        process.terminate()
        process.wait(15)


@dataclass
class Load:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, token: str, connections: int = 50, seconds: int = 10) -> Load | None:
    """Load url with wrk (a C load generator, Debian's package): None if it is not there."""
    program = shutil.which("wrk")
    if program is None:
        return None
    out = subprocess.run(
        [program, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-H", f"X-Cloudchain-Token: {token}", url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(rate, p50, p99, int(errors.group(1)) if errors else 0)
