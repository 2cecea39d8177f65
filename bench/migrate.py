"""--import-from credstash beside `credstash getall`, on one table, in one run.

Run with `make bench` (or alone, in the bench virtualenv). It starts a moto server, seeds a
credstash table with 500 secrets x 3 versions through credstash's own putSecret, then runs,
each through a proxy that counts every request: `cchain --import-from credstash` into an empty
table, the same import again (nothing left to do), and `credstash getall` (which reads only the
latest version of each secret). For each: wall time, requests made and peak memory, and the
ratios of the import to getall.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from credstash_table import CREDSTASH_TABLE  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402  (counts requests by operation)
from run import PEAK_WRAPPER, isolated_env, moto_server  # noqa: E402

BIN = Path(sys.executable).parent
KEY_ALIAS = "alias/cloudchain-bench"


def measured(argv: list[str], env: dict[str, str], proxy: FaultProxy) -> tuple[float, int, int]:
    """Run a console script once: its wall time, the requests it made, its peak RSS in KiB."""
    before = sum(proxy.counts.values())
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as out:
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", PEAK_WRAPPER, out.name, *argv],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()}")
        return wall, sum(proxy.counts.values()) - before, int(Path(out.name).read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--secrets", type=int, default=500)
    parser.add_argument("--versions", type=int, default=3)
    args = parser.parse_args()

    import credstash

    from cloudchain import CloudChain

    home = tempfile.mkdtemp(prefix="cchain-bench-migrate-")
    base_env = isolated_env(home)
    if "PYTHONPATH" in os.environ:  # a checkout under test, as the tests run it
        base_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    os.environ.clear()
    os.environ.update(base_env)
    os.chdir(home)  # credstash.log lands here

    with moto_server() as port, contextlib.ExitStack() as stack:
        direct = f"http://127.0.0.1:{port}"
        CloudChain(endpoint_url=direct, keyalias=KEY_ALIAS).setup(create_key=True)
        kms = boto3.client("kms", endpoint_url=direct, region_name="us-east-1")
        kms.create_alias(
            AliasName="alias/credstash", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"]
        )
        dynamodb = boto3.resource("dynamodb", endpoint_url=direct, region_name="us-east-1")
        dynamodb.create_table(**CREDSTASH_TABLE)
        for n in range(args.secrets):
            for v in range(1, args.versions + 1):
                credstash.putSecret(
                    f"svc{n % 10}.user-{n:04d}", f"secret-{n}-v{v}-{'x' * 24}", version=str(v),
                    kms=kms, dynamodb=dynamodb,
                )  # fmt: skip

        proxy = stack.enter_context(FaultProxy(port))
        # A client that closes its kept-alive connection is no error worth a traceback here.
        proxy._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        counted = proxy.url
        ours = {**base_env, "CLOUDCHAIN_ENDPOINT_URL": counted, "CLOUDCHAIN_KEY_ALIAS": KEY_ALIAS}
        peer = {**base_env, "AWS_ENDPOINT_URL": counted}
        cchain = str(BIN / "cchain")
        credstash_cli = shutil.which("credstash", path=f"{BIN}:{base_env['PATH']}") or "credstash"
        rows = {
            "cchain --import-from credstash": measured(
                [cchain, "--import-from", "credstash"], ours, proxy
            ),
            "  the same import again (no-op)": measured(
                [cchain, "--import-from", "credstash"], ours, proxy
            ),
            "credstash getall (latest only)": measured(
                [credstash_cli, "-r", "us-east-1", "getall"], peer, proxy
            ),
        }
    total = args.secrets * args.versions
    print(f"\nimport from credstash: {args.secrets} secrets x {args.versions} versions "
          f"({total} versions), moto server behind a request-counting proxy")  # fmt: skip
    print(f"{'':34}{'wall s':>9}{'requests':>10}{'peak MiB':>10}")
    for name, (wall, requests, peak) in rows.items():
        print(f"{name:34}{wall:9.2f}{requests:10d}{peak / 1024:10.1f}")
    ours_run, peer_run = (
        rows["cchain --import-from credstash"],
        rows["credstash getall (latest only)"],
    )
    print(
        f"import / getall: wall {ours_run[0] / peer_run[0]:.2f}, requests "
        f"{ours_run[1] / peer_run[1]:.2f}, peak memory {ours_run[2] / peer_run[2]:.2f} "
        f"(the import reads and writes all {args.versions} versions; getall reads the latest)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
