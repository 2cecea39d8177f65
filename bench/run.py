"""cloudchain against credstash, side by side in one run, through a 20 ms round-trip proxy.

Run with `make bench`. It starts a moto server, puts bench/latency_proxy.py in front of it,
seeds both tools, and alternates them round by round, so machine noise hits both alike. It
prints medians and the ratio cloudchain/credstash (below 1 means cloudchain is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).parent))
from latency_proxy import LatencyProxy

BIN = Path(sys.executable).parent
SERVICE = "bench"
KEY_ALIAS = "alias/cloudchain-bench"
FLOOR = """
import os, botocore.session
from botocore.config import Config
s = botocore.session.Session()
cfg = Config(retries={"mode": "standard", "total_max_attempts": 5})
url = os.environ["CLOUDCHAIN_ENDPOINT_URL"]
d = s.create_client("dynamodb", region_name="us-east-1", endpoint_url=url, config=cfg)
k = s.create_client("kms", region_name="us-east-1", endpoint_url=url, config=cfg)
import base64
item = d.get_item(TableName="safedb", ConsistentRead=True,
                  Key={"Service": {"S": "bench"}, "Username": {"S": "user-000"}})["Item"]
ctx = {"Service": "bench", "Username": "user-000", "Version": item["Version"]["N"]}
blob = base64.b64decode(item["Secret"]["S"])
print(k.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"].decode())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


# Peak memory is read from inside the measured process: VmHWM in /proc/self/status belongs to
# the process image after exec. rusage's ru_maxrss would also count the pages the child
# shared with this (large) bench process between fork and exec.
PEAK_WRAPPER = """
import atexit, runpy, sys
out = sys.argv[1]
def report():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(out, "w") as handle:
        handle.write(peak)
atexit.register(report)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_process(argv: list[str], env: dict[str, str]) -> float:
    """Run a whole process to completion and return its wall time in seconds."""
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {proc.stderr.decode()}")
    return wall


def peak_rss_kib(argv: list[str], env: dict[str, str]) -> int:
    """Run a Python console script once and return its peak resident memory in KiB."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as out:
        subprocess.run(
            [sys.executable, "-c", PEAK_WRAPPER, out.name, *argv],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        return int(Path(out.name).read_text())


def per_call(fn: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--secrets", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="round trip")
    parser.add_argument("--calls", type=int, default=10, help="in-process calls per round")
    args = parser.parse_args()

    import credstash

    from cloudchain import CloudChain

    home = tempfile.mkdtemp(prefix="cchain-bench-")
    base_env = {
        "PATH": os.environ["PATH"],
        "HOME": home,
        "LANG": "C.UTF-8",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.path.join(home, "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "aws-credentials"),
    }
    os.environ.clear()
    os.environ.update(base_env)

    with moto_server() as port:
        direct = f"http://127.0.0.1:{port}"
        proxy = LatencyProxy(port, args.latency_ms / 2000).start()
        slow = f"http://127.0.0.1:{proxy.port}"

        # Seed both tools directly, without the latency.
        os.environ["AWS_ENDPOINT_URL"] = direct
        seed = CloudChain(endpoint_url=direct, keyalias=KEY_ALIAS)
        seed.setup(create_key=True)
        kms = boto3.client("kms", endpoint_url=direct, region_name="us-east-1")
        kms.create_alias(
            AliasName="alias/credstash", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"]
        )
        with contextlib.redirect_stdout(io.StringIO()):
            credstash.createDdbTable(region="us-east-1")
        values = {f"user-{n:03d}": f"secret-{n}-{'x' * 24}" for n in range(args.secrets)}
        seed.import_secrets(SERVICE, values)
        for user, value in values.items():
            credstash.putSecret(f"{SERVICE}-{user}", value, version="1", region="us-east-1")

        # Everything timed goes through the proxy.
        os.environ["AWS_ENDPOINT_URL"] = slow
        ours_env = {**base_env, "CLOUDCHAIN_ENDPOINT_URL": slow, "CLOUDCHAIN_KEY_ALIAS": KEY_ALIAS}
        peer_env = {**base_env, "AWS_ENDPOINT_URL": slow}
        cchain, credstash_cli = str(BIN / "cchain"), str(BIN / "credstash")
        chain = CloudChain(endpoint_url=slow, keyalias=KEY_ALIAS)
        chain.read(SERVICE, "user-000")  # warm: clients built once, as in a long-running app
        counter = iter(range(10**9))

        rows: dict[str, Callable[[], tuple[float, float, float | None]]] = {}

        def process_row(
            ours: list[str], peer: list[str], floor: list[str] | None
        ) -> Callable[[], tuple[float, float, float | None]]:
            flip = iter(range(10**9))

            def one() -> tuple[float, float, float | None]:
                # Alternate the order inside each round too: whoever runs first pays for
                # cold caches, so neither tool always does.
                runs = [("ours", ours, ours_env), ("peer", peer, peer_env)]
                if floor:
                    runs.append(("floor", floor, ours_env))
                if next(flip) % 2:
                    runs.reverse()
                times = {name: run_process(argv, env) for name, argv, env in runs}
                return times["ours"], times["peer"], times.get("floor")

            return one

        rows["cchain --read vs credstash get (process)"] = process_row(
            [cchain, "-u", "user-000", "-e", SERVICE, "--read"],
            [credstash_cli, "get", f"{SERVICE}-user-000"],
            [sys.executable, "-c", FLOOR],
        )
        rows[f"cchain --export vs credstash getall, {args.secrets} secrets (process)"] = (
            process_row([cchain, "-e", SERVICE, "--export"], [credstash_cli, "getall"], None)
        )

        def in_process(
            ours: Callable[[], object], peer: Callable[[], object]
        ) -> Callable[[], tuple[float, float, None]]:
            return lambda: (per_call(ours, args.calls), per_call(peer, args.calls), None)

        rows["CloudChain.read (warm, uncached) vs credstash.getSecret (per call)"] = in_process(
            lambda: chain.read(SERVICE, "user-001"),
            lambda: credstash.getSecret(f"{SERVICE}-user-001", region="us-east-1"),
        )

        def peer_save() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                credstash.putSecretAutoversion(
                    "saved", f"value-{next(counter)}", region="us-east-1"
                )

        cached = CloudChain(endpoint_url=slow, cache_ttl=3600)
        cached.read(SERVICE, "user-002")
        rows["CloudChain.read with cache_ttl (hit) vs credstash.getSecret (per call)"] = in_process(
            lambda: cached.read(SERVICE, "user-002"),
            lambda: credstash.getSecret(f"{SERVICE}-user-002", region="us-east-1"),
        )

        rows["CloudChain.save vs credstash.putSecretAutoversion (per call)"] = in_process(
            lambda: chain.save(SERVICE, "saved", f"value-{next(counter)}"), peer_save
        )

        results: dict[str, list[tuple[float, float, float | None]]] = {name: [] for name in rows}
        for round_no in range(args.rounds):
            for name, measure in rows.items():
                results[name].append(measure())
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
        peaks = {
            label: (
                statistics.median(peak_rss_kib(ours, ours_env) for _ in range(3)),
                statistics.median(peak_rss_kib(peer, peer_env) for _ in range(3)),
            )
            for label, ours, peer in [
                ("cchain --read vs credstash get", [cchain, "-u", "user-000", "-e", SERVICE, "--read"],
                 [credstash_cli, "get", f"{SERVICE}-user-000"]),
                (f"cchain --export vs credstash getall ({args.secrets})", [cchain, "-e", SERVICE, "--export"],
                 [credstash_cli, "getall"]),
            ]
        }  # fmt: skip
        proxy.stop()

    print(
        f"\n{args.rounds} alternating rounds, moto server behind a {args.latency_ms:g} ms round-trip proxy"
    )
    print(f"{'measurement':<75} {'cloudchain':>11} {'credstash':>10} {'ratio':>7}")
    for name, samples in results.items():
        ours = statistics.median(s[0] for s in samples)
        peer = statistics.median(s[1] for s in samples)
        print(f"{name:<75} {ours * 1000:>9.3f}ms {peer * 1000:>8.1f}ms {ours / peer:>7.4f}")
        floors = [s[2] for s in samples if s[2] is not None]
        if floors:
            floor = statistics.median(floors)
            print(
                f"{'  floor: bare botocore script, same two calls (process)':<75} {floor * 1000:>9.1f}ms {'':>10} {ours / floor:>6.2f}x floor"
            )
    for label, (ours_kb, peer_kb) in peaks.items():
        label = f"peak memory (VmHWM), {label}"
        print(
            f"{label:<75} {ours_kb / 1024:>9.1f}MB {peer_kb / 1024:>8.1f}MB {ours_kb / peer_kb:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
