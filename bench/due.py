"""`cchain --due` over 1,000 secrets beside `cchain --list`, against a moto server.

Run alone (`python bench/due.py`, or through `make bench`). It seeds 1,000 rows (half with a
rotation schedule, a tenth of those due; the ciphertexts are stand-ins, since neither command
reads one), then counts the AWS requests each makes in-process (through botocore's event
hooks) and times each as a whole `cchain` process, alternating them round by round so machine
noise hits both alike. It prints the requests and median wall times, and the ratio due/list.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from run import moto_server

from cloudchain import CloudChain, layout

SECRETS = 1_000
ROUNDS = 7
TABLE = "safedb"


def seed(chain: CloudChain) -> None:
    now = datetime.now(timezone.utc)
    items = []
    for n in range(SECRETS):
        saved = (now - timedelta(days=n % 100)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        version = layout.StoredVersion(
            version=1, ciphertext=os.urandom(180), saved_at=saved,
            context_keys=("Service", "Username", "Version"),
        )  # fmt: skip
        period = 90 * 86_400 if n % 2 else None  # every other one has a schedule
        state = layout.RowState(revision=1, write_id="seed", retention=10, rotate_every=period)
        items.append(layout.build_item(f"svc-{n % 20:02d}", f"user-{n:04d}", version, [], state))
    client = chain._dynamodb
    for start in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        client.batch_write_item(RequestItems={TABLE: batch})


def requests(chain: CloudChain, call: Any) -> Counter[str]:
    made: Counter[str] = Counter()

    def record(model: Any, **_: Any) -> None:
        made[f"{model.service_model.service_name}:{model.name}"] += 1

    clients = (chain._dynamodb, chain._kms)
    for client in clients:
        client.meta.events.register("before-call.*.*", record)
    call()
    for client in clients:
        client.meta.events.unregister("before-call.*.*", record)
    return made


def wall(argv: list[str], env: dict[str, str], ok: tuple[int, ...]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - started
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()}")
    return took


def main() -> None:
    with moto_server() as port:
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "CLOUDCHAIN_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        os.environ.update(env)
        chain = CloudChain(endpoint_url=url, keyalias="alias/cloudchain-bench")
        chain.setup(create_key=True)
        seed(chain)
        due = chain.due()
        print(f"--due over {SECRETS} secrets ({SECRETS // 2} scheduled): {len(due)} listed, "
              f"{sum(d.due for d in due)} due now")  # fmt: skip
        rows = {
            "--due": requests(chain, chain.due),
            "--list": requests(chain, lambda: list(chain.list())),
        }
        for name, made in rows.items():
            kms = sum(n for op, n in made.items() if op.startswith("kms:"))
            print(f"{name:8} requests: {dict(made)}  (KMS: {kms})")
        cchain = str(Path(sys.executable).parent / "cchain")
        times: dict[str, list[float]] = {"--due": [], "--list": []}
        for _ in range(ROUNDS):
            times["--due"].append(wall([cchain, "--due"], env, ok=(0, 5)))
            times["--list"].append(wall([cchain, "--list"], env, ok=(0,)))
        median = {name: statistics.median(t) for name, t in times.items()}
        for name, took in median.items():
            print(f"{name:8} wall (cchain process, median of {ROUNDS}): {took * 1000:.0f} ms")
        print(f"ratio --due/--list: {median['--due'] / median['--list']:.2f}")


if __name__ == "__main__":
    main()
