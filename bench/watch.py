"""KMS calls of the agent's refresh-ahead, counted by a request-recording proxy.

Run alone (`python bench/watch.py`) or from `make bench`. It starts a moto server, puts a
recording proxy (tests/faultproxy.py) in front of it, seeds a service of 200 secrets, and
runs cchain-agent prefetching it with a 2 s TTL (a refresh about every second). It counts the
KMS Decrypt calls of the start, of 10 refresh periods with nothing changed, and of the
period after one save: the target is 200 + 0 + 1. Beside it, the baseline of a refresh that
reloads the whole service (as the agent did before change checks), measured in the same run
as the Decrypt calls of one `cchain --export` of the service through the same proxy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from agent import agent  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402
from run import moto_server  # noqa: E402

BIN = Path(sys.executable).parent
SERVICE = "bench-watch"
KEY_ALIAS = "alias/cloudchain-bench"
SECRETS = 200
PERIODS = 10


def _until(done: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/watch.py: timed out waiting for {what}")
        time.sleep(0.05)


def _cchain(env: dict[str, str], *args: str, stdin: str = "") -> None:
    done = subprocess.run([str(BIN / "cchain"), *args], input=stdin.encode(), env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"cchain {args[0]} failed: {done.stderr.decode()}")


def main() -> int:
    with moto_server() as port, FaultProxy(port) as proxy, tempfile.TemporaryDirectory() as tmp:
        proxy._server.handle_error = lambda *args: None  # type: ignore[method-assign]  # resets at the end
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLOUDCHAIN_"))}
        env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                   AWS_DEFAULT_REGION="us-east-1", CLOUDCHAIN_KEY_ALIAS=KEY_ALIAS,
                   CLOUDCHAIN_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                   XDG_RUNTIME_DIR=tmp)  # fmt: skip
        _cchain(env, "--setup", "--create-key")
        values = {f"user-{n:03d}": f"value-{n}" for n in range(SECRETS)}
        _cchain(env, "-e", SERVICE, "--import", "-", stdin=json.dumps(values))
        proxied = {**env, "CLOUDCHAIN_ENDPOINT_URL": proxy.url}

        before = proxy.count("Decrypt")
        _cchain(proxied, "-e", SERVICE, "--export", "--format", "json")
        reload_cost = proxy.count("Decrypt") - before

        with agent(str(BIN / "cchain-agent"), proxied, "--prefetch", SERVICE, "--ttl", "2",
                   folder=Path(tmp)):  # fmt: skip
            start = proxy.count("Decrypt") - before - reload_cost
            queries = proxy.count("Query")
            _until(lambda: proxy.count("Query") - queries >= PERIODS, "10 refresh periods")
            quiet = proxy.count("Decrypt") - before - reload_cost - start
            _cchain(env, "-e", SERVICE, "-u", "user-007", "--save", "-", stdin="changed")
            queries = proxy.count("Query")
            _until(lambda: proxy.count("Query") - queries >= 2, "the period after the save")
            saved = proxy.count("Decrypt") - before - reload_cost - start - quiet

    met = (start, quiet, saved) == (SECRETS, 0, 1)
    print(f"agent prefetching {SECRETS} secrets, {PERIODS} refresh periods with no change, "
          f"then one save: KMS calls {start} + {quiet} + {saved} "
          f"(target {SECRETS} + 0 + 1: {'met' if met else 'MISSED'})")  # fmt: skip
    print(
        f"  baseline, a refresh that reloads the whole service ({reload_cost} KMS calls "
        f"measured for one export): {reload_cost} + {PERIODS * reload_cost} + {reload_cost}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
