"""Faults against a moto server: a stopped emulator, dropped connections, throttling, hangs."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from helpers import KEY_ALIAS
from support import Emulator

import cloudchain
from cloudchain import CloudChain

pytestmark = pytest.mark.e2e


def _port(emulator: Emulator) -> int:
    return int(emulator.url.rsplit(":", 1)[1])


def _through(emulator: Emulator, proxy: FaultProxy) -> Emulator:
    return Emulator(proxy.url, {**emulator.env, "CLOUDCHAIN_ENDPOINT_URL": proxy.url})


def _seed(emulator: Emulator, count: int) -> Emulator:
    CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS).import_secrets(
        "app", {f"k{n:03d}": f"value-{n}" for n in range(count)}
    )
    return emulator


@pytest.fixture
def seeded(emulator: Emulator) -> Emulator:
    return _seed(emulator, 30)


def test_stopped_emulator_fails_the_next_command_cleanly_with_defaults(
    local_emulator: Emulator, tmp_path: Path
) -> None:
    assert local_emulator.run("-u", "a", "-e", "s", "--save", "-", stdin="x").code == 0
    assert local_emulator.process is not None
    local_emulator.process.terminate()
    local_emulator.process.wait(timeout=15)
    started = time.monotonic()
    result = local_emulator.run("-u", "a", "-e", "s", "--read")
    elapsed = time.monotonic() - started
    assert result.code == 1
    assert result.out == ""
    error, hint = result.err.splitlines()  # one error line, and one hint line
    assert error.startswith("cchain: error: ") and hint.startswith("cchain: hint: ")
    assert "Traceback" not in result.err
    assert local_emulator.url in result.err
    assert elapsed < 16, f"took {elapsed:.1f} s with default retries"


def test_connection_dropped_in_the_middle_of_an_export(seeded: Emulator, tmp_path: Path) -> None:
    # The Query and the first 20 decrypts go through; then the network is gone.
    def policy(operation: str, count: int, body: bytes) -> str:
        return "drop" if operation == "Decrypt" and count > 20 else "forward"

    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "app.env"
    with FaultProxy(_port(seeded), policy) as proxy:
        result = _through(seeded, proxy).run(
            "-e", "app", "--export", "--format", "dotenv", "-o", str(out), "--max-attempts", "2"
        )
        stdout = _through(seeded, proxy).run("-e", "app", "--export", "--max-attempts", "2")
    assert result.code == 1
    assert "cannot reach" in result.err or "cannot decrypt" in result.err
    assert not out.exists()
    assert list(folder.iterdir()) == []  # not even a temporary file left behind
    assert (stdout.code, stdout.out) == (1, "")


def _throttle_kms(fraction: float, seed: int = 7) -> Iterator[str]:
    rng = random.Random(seed)
    while True:
        yield "throttle" if rng.random() < fraction else "forward"


def test_thirty_percent_kms_throttling_still_exports_imports_and_saves(emulator: Emulator) -> None:
    seeded = _seed(emulator, 100)
    decisions = _throttle_kms(0.3)
    lock = threading.Lock()

    def policy(operation: str, count: int, body: bytes) -> str:
        if operation not in ("Decrypt", "Encrypt"):
            return "forward"
        with lock:
            return next(decisions)

    with FaultProxy(_port(seeded), policy) as proxy:
        slow = _through(seeded, proxy)
        # Three commands at once, on separate services, so the slowest sets the test's time.
        with ThreadPoolExecutor(3) as pool:
            exporting = pool.submit(slow.run, "-e", "app", "--export")
            importing = pool.submit(
                slow.run, "-e", "other", "--import", "-",
                stdin=json.dumps({f"k{n:03d}": f"new-{n}" for n in range(10)}),
            )  # fmt: skip
            saving = pool.submit(
                slow.run, "-u", "extra", "-e", "third", "--save", "-", stdin="saved"
            )
            exported, imported, saved = exporting.result(), importing.result(), saving.result()
        throttled = proxy.counts
    assert exported.code == 0, exported.err
    assert json.loads(exported.out) == {f"k{n:03d}": f"value-{n}" for n in range(100)}
    assert imported.code == 0, imported.err
    assert "10 created, 0 changed, 0 unchanged" in imported.err
    assert saved.code == 0, saved.err
    assert throttled["Decrypt"] > 100  # the proxy really did throttle and botocore retried
    direct = CloudChain(endpoint_url=seeded.url)
    assert direct.export("other") == {f"k{n:03d}": f"new-{n}" for n in range(10)}
    assert direct.read("third", "extra") == "saved"


def test_a_proxy_that_never_answers_fails_within_the_configured_timeouts(
    seeded: Emulator,
) -> None:
    with FaultProxy(_port(seeded), lambda operation, count, body: "hang") as proxy:
        started = time.monotonic()
        result = _through(seeded, proxy).run(
            "-u", "k001", "-e", "app", "--read",
            "--connect-timeout", "0.5", "--read-timeout", "0.5", "--max-attempts", "2",
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert result.code == 1
    assert "Traceback" not in result.err
    assert proxy.url in result.err
    # 2 attempts x 0.5 s, one backoff of at most 1 s, and cchain's own start-up.
    assert elapsed < 5, f"took {elapsed:.1f} s"


@pytest.mark.parametrize("cache_ttl", [None, "60"])
def test_readcreds_from_sixteen_threads(
    seeded: Emulator, monkeypatch: pytest.MonkeyPatch, cache_ttl: str | None
) -> None:
    with FaultProxy(_port(seeded)) as proxy:
        monkeypatch.setenv("CLOUDCHAIN_ENDPOINT_URL", proxy.url)
        if cache_ttl:
            monkeypatch.setenv("CLOUDCHAIN_CACHE_TTL", cache_ttl)
        users = [f"k{n:03d}" for n in range(4)] * 4
        results: dict[int, str] = {}
        barrier = threading.Barrier(len(users))

        def reader(n: int, user: str) -> None:
            barrier.wait()
            results[n] = cloudchain.readcreds("app", user)

        threads = [threading.Thread(target=reader, args=pair) for pair in enumerate(users)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert results == {n: f"value-{int(user[1:])}" for n, user in enumerate(users)}
        for user in set(users):
            expected = 1 if cache_ttl else 4
            assert proxy.count("GetItem", user.encode()) == expected
            assert proxy.count("Decrypt") == (4 if cache_ttl else 16)
