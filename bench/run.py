"""cloudchain against credstash, side by side in one run, through a 20 ms round-trip proxy.

Run with `make bench`. It starts a moto server, puts bench/latency_proxy.py in front of it,
seeds both tools, and alternates them round by round, so machine noise hits both alike. It
prints medians and the ratio cloudchain/credstash (below 1 means cloudchain is faster). Then
cchain-agent: a wrk load of 50 connections for 10 s, and its peak memory holding 1,000
secrets, which have no credstash counterpart.
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
from agent import agent, wrk
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


def isolated_env(home: str) -> dict[str, str]:
    """An environment for the processes measured: fake credentials for moto, and a HOME of
    their own, so nothing of the caller's AWS or cchain settings reaches them."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": home,
        "LANG": "C.UTF-8",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.path.join(home, "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "aws-credentials"),
    }


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
    base_env = isolated_env(home)
    os.environ.clear()
    os.environ.update(base_env)
    os.chdir(home)  # whatever a tool leaves in its working directory (credstash.log) goes here

    with moto_server() as port, contextlib.ExitStack() as stack:
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
            ours: list[str],
            peer: list[str],
            floor: list[str] | None,
            env: dict[str, str] | None = None,
            before: Callable[[], None] | None = None,
        ) -> Callable[[], tuple[float, float, float | None]]:
            flip = iter(range(10**9))

            def one() -> tuple[float, float, float | None]:
                # Alternate the order inside each round too: whoever runs first pays for
                # cold caches, so neither tool always does.
                runs = [("ours", ours, env or ours_env), ("peer", peer, peer_env)]
                if floor:
                    runs.append(("floor", floor, ours_env))
                if next(flip) % 2:
                    runs.reverse()
                times = {}
                for name, argv, run_env in runs:
                    if name == "ours" and before is not None:
                        before()
                    times[name] = run_process(argv, run_env)
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

        # cchain-agent on a unix socket, reading through the same proxy.
        from cloudchain.agent.client import AgentClient

        agent_env = {**ours_env, "XDG_RUNTIME_DIR": os.path.join(home, "run")}
        served = stack.enter_context(agent(str(BIN / "cchain-agent"), agent_env, folder=Path(home)))
        via_agent = {**ours_env, **served.settings}
        client = AgentClient(served.settings["CLOUDCHAIN_AGENT"])
        client.read(SERVICE, "user-000")  # a hit from the first measured round on
        read_argv = [cchain, "-u", "user-000", "-e", SERVICE, "--read"]
        peer_get = [credstash_cli, "get", f"{SERVICE}-user-000"]
        rows["cchain --read through cchain-agent, cache hit vs credstash get (process)"] = (
            process_row(read_argv, peer_get, None, env=via_agent)
        )
        rows["cchain --read through cchain-agent, cache miss vs credstash get (process)"] = (
            process_row(read_argv, peer_get, None, env=via_agent,
                        before=lambda: client.refresh(SERVICE, "user-000"))
        )  # fmt: skip

        # The same read over loopback TCP, where cchain proves itself by challenge-response
        # (two requests on one connection, an HMAC each way) instead of sending the token.
        tcp = stack.enter_context(
            agent(str(BIN / "cchain-agent"), agent_env, "--listen", "127.0.0.1:0",
                  "--token-file", str(write_token(home)), folder=Path(home))
        )  # fmt: skip
        token = Path(tcp.settings["CLOUDCHAIN_AGENT_TOKEN_FILE"]).read_text().strip()
        AgentClient(tcp.settings["CLOUDCHAIN_AGENT"], token).read(SERVICE, "user-000")
        rows[
            "cchain --read through cchain-agent over TCP, cache hit vs credstash get (process)"
        ] = process_row(read_argv, peer_get, None, env={**ours_env, **tcp.settings})

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

        # The agent under load: 50 connections of cached reads for 10 s, on loopback TCP, with
        # the plain token header (as curl and other languages send it).
        url = f"{tcp.settings['CLOUDCHAIN_AGENT']}/v1/secret?service={SERVICE}&user=user-000"
        load = wrk(url, token)
        # Peak memory holding 1,000 secrets: a service of 1,000, prefetched.
        seed.import_secrets("thousand", {f"user-{n:04d}": f"secret-{n}-{'y' * 24}"
                                         for n in range(1000)})  # fmt: skip
        with agent(str(BIN / "cchain-agent"), {**agent_env, "CLOUDCHAIN_ENDPOINT_URL": direct},
                   "--listen", "unix:" + os.path.join(home, "thousand.sock"),
                   "--prefetch", "thousand", folder=Path(home)) as holding:  # fmt: skip
            held = AgentClient(holding.settings["CLOUDCHAIN_AGENT"]).export("thousand")
            assert len(held) == 1000
            agent_peak = holding.peak_kib()
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
    print(f"\n{'cchain-agent, no credstash counterpart':<75}")
    if load is None:
        print(f"{'  load (wrk -t2 -c50 -d10s, cached reads)':<75} skipped: wrk is not installed")
    else:
        print(f"{'  load (wrk -t2 -c50 -d10s, cached reads over loopback TCP)':<75} "
              f"{load.requests_per_second:>9.0f} requests/s, p50 {load.p50_ms:.2f} ms, "
              f"p99 {load.p99_ms:.2f} ms, {load.errors} errors")  # fmt: skip
    print(f"{'  peak memory (VmHWM) holding 1,000 prefetched secrets':<75} "
          f"{agent_peak / 1024:>9.1f}MB")  # fmt: skip
    return 0


def write_token(home: str) -> Path:
    """A token file for the TCP agent (the agent would write one too; this one is known)."""
    path = Path(home) / "bench.token"
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o600)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
