"""`cchain --rotate` (no hook) beside a plain `cchain --save`, end to end against the emulator.

Run alone (`python bench/rotation.py`) or through `make bench`. It starts a moto server, puts
bench/latency_proxy.py in front of it (a 20 ms round trip, as to a nearby AWS region), and runs
the installed cchain as a process, alternating the two commands round by round so machine
noise hits both alike. It prints the median wall time of each, their ratio, and the AWS
requests each makes (counted in-process on the same calls the command makes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from latency_proxy import LatencyProxy
from run import BIN, KEY_ALIAS, isolated_env, moto_server

SERVICE = "bench-rotation"


def timed(argv: list[str], env: dict[str, str], stdin: bytes) -> float:
    """Run one cchain process to completion; return its wall time in seconds."""
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, input=stdin, capture_output=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()}")
    return wall


def requests_of(chain: Any, call: Any) -> Counter[str]:
    """The AWS operations one library call makes."""
    seen: Counter[str] = Counter()

    def record(model: Any, **_: Any) -> None:
        seen[model.name] += 1

    clients = (chain._dynamodb, chain._kms)
    for client in clients:
        client.meta.events.register("before-call.*.*", record)
    try:
        call()
    finally:
        for client in clients:
            client.meta.events.unregister("before-call.*.*", record)
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="round trip")
    args = parser.parse_args()

    from cloudchain import CloudChain
    from cloudchain.rotation import rotate

    home = tempfile.mkdtemp(prefix="cchain-bench-rotation-")
    env = isolated_env(home)
    if "PYTHONPATH" in os.environ:  # a checkout under test, as the test suite runs it
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    with moto_server() as port:
        direct = f"http://127.0.0.1:{port}"
        proxy = LatencyProxy(port, args.latency_ms / 2000).start()
        slow = f"http://127.0.0.1:{proxy.port}"
        seed = CloudChain(endpoint_url=direct, keyalias=KEY_ALIAS)
        seed.setup(create_key=True)
        for user in ("saved", "rotated"):
            seed.save(SERVICE, user, "first")

        chain = CloudChain(endpoint_url=slow, keyalias=KEY_ALIAS)
        saves = requests_of(chain, lambda: chain.save(SERVICE, "saved", "counted"))
        rotations = requests_of(chain, lambda: rotate(chain, SERVICE, "rotated", "counted"))

        run_env = {**env, "CLOUDCHAIN_ENDPOINT_URL": slow, "CLOUDCHAIN_KEY_ALIAS": KEY_ALIAS}
        cchain = str(BIN / "cchain")
        commands = {
            "save": [cchain, "-e", SERVICE, "-u", "saved", "--save", "-"],
            "rotate": [cchain, "-e", SERVICE, "-u", "rotated", "--rotate"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for n in range(args.rounds):
            order = list(commands) if n % 2 else list(reversed(commands))
            for name in order:
                times[name].append(timed(commands[name], run_env, f"value-{n}".encode()))
        proxy.stop()

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"--rotate without a hook vs --save, {args.rounds} rounds, {args.latency_ms:g} ms RTT")
    for name, counts in (("save", saves), ("rotate", rotations)):
        requests = ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))
        print(f"  cchain --{name:<7} {medians[name] * 1000:7.0f} ms   requests: {requests}")
    print(f"  ratio rotate/save: {medians['rotate'] / medians['save']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
