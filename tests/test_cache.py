"""The optional in-process cache: TTL, jitter, single flight, invalidation, stale-if-error."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from helpers import KEY_ALIAS, CallCounter

from cloudchain import CloudChain, EndpointError, SecretNotFoundError, ValidationError
from cloudchain.cache import JITTER, SecretCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_value_is_served_from_cache_until_its_jittered_refresh() -> None:
    clock, fetches = Clock(), []
    cache = SecretCache(ttl=100, clock=clock)

    def fetch() -> str:
        fetches.append(clock.now)
        return f"v{len(fetches)}"

    assert cache.get("k", fetch) == "v1"
    clock.now += 100 * (1 - JITTER) - 0.01
    assert cache.get("k", fetch) == "v1"
    clock.now += 100 * JITTER + 0.02
    assert cache.get("k", fetch) == "v2"
    assert len(fetches) == 2


def test_refresh_times_are_jittered() -> None:
    clock = Clock()
    cache = SecretCache(ttl=100, clock=clock)
    for n in range(50):
        cache.get(n, lambda: "v")
    refresh = {round(cache._entries[n].refresh_at - clock.now, 6) for n in range(50)}
    assert len(refresh) > 40
    assert all(100 * (1 - JITTER) <= r <= 100 for r in refresh)


def test_concurrent_misses_for_one_key_make_one_fetch() -> None:
    cache = SecretCache(ttl=60)
    calls, barrier = [], threading.Barrier(16)

    def fetch() -> str:
        calls.append(1)
        time.sleep(0.2)
        return "v"

    def reader() -> None:
        barrier.wait()
        assert cache.get("k", fetch) == "v"

    threads = [threading.Thread(target=reader) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1


def test_stale_value_is_served_while_aws_fails_then_the_error() -> None:
    clock = Clock()
    cache = SecretCache(ttl=10, stale_if_error=30, clock=clock)
    cache.get("k", lambda: "good")

    def failing() -> str:
        raise EndpointError("cannot reach http://x")

    clock.now += 20
    assert cache.get("k", failing) == "good"
    clock.now += 19.9
    assert cache.get("k", failing) == "good"
    clock.now += 0.2
    with pytest.raises(EndpointError):
        cache.get("k", failing)


def test_without_stale_if_error_a_failure_raises() -> None:
    clock = Clock()
    cache = SecretCache(ttl=10, clock=clock)
    cache.get("k", lambda: "good")
    clock.now += 11

    def failing() -> str:
        raise EndpointError("down")

    with pytest.raises(EndpointError):
        cache.get("k", failing)


def test_authoritative_answers_are_never_served_stale() -> None:
    clock = Clock()
    cache = SecretCache(ttl=10, stale_if_error=1000, clock=clock)
    cache.get("k", lambda: "good")
    clock.now += 11

    def gone() -> str:
        raise SecretNotFoundError("deleted")

    with pytest.raises(SecretNotFoundError):
        cache.get("k", gone)


def test_cached_reads_skip_aws_and_writes_through_the_instance_invalidate(
    chain: CloudChain,
) -> None:
    cached = CloudChain(keyalias=KEY_ALIAS, cache_ttl=300)
    counter = CallCounter(cached._dynamodb, cached._kms)
    chain.save("svc", "u", "one")
    assert cached.read("svc", "u") == "one"
    assert cached.read("svc", "u") == "one"
    assert counter.count("Decrypt") == 1
    cached.save("svc", "u", "two")
    assert cached.read("svc", "u") == "two"
    assert cached.read("svc", "u", version=1) == "one"
    cached.rollback("svc", "u", 1)
    assert cached.read("svc", "u") == "one"
    cached.delete("svc", "u")
    with pytest.raises(SecretNotFoundError):
        cached.read("svc", "u")


def test_writes_by_another_instance_are_seen_only_after_the_ttl(chain: CloudChain) -> None:
    cached = CloudChain(cache_ttl=300)
    chain.save("svc", "u", "one")
    assert cached.read("svc", "u") == "one"
    chain.save("svc", "u", "two")
    assert cached.read("svc", "u") == "one"


def test_cache_is_off_by_default(chain: CloudChain) -> None:
    chain.save("svc", "u", "x")
    counter = CallCounter(chain._dynamodb, chain._kms)
    chain.read("svc", "u")
    chain.read("svc", "u")
    assert counter.count("Decrypt") == 2


def test_cache_ttl_from_file_and_environment(
    chain: CloudChain, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".cchainrc").write_text("[cache]\nttl = 30\nstale_if_error = 5\n")
    config = CloudChain.from_config().config
    assert (config.cache_ttl, config.stale_if_error) == (30, 5)
    monkeypatch.setenv("CLOUDCHAIN_CACHE_TTL", "0")
    assert CloudChain.from_config()._cache is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cache_ttl": -1},
        {"stale_if_error": -1},
        {"connect_timeout": 0},
        {"read_timeout": "10"},
        {"max_attempts": 0},
        {"retry_mode": "eager"},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CloudChain(**kwargs)  # type: ignore[arg-type]


def test_no_repr_shows_a_cached_value() -> None:
    cache = SecretCache(ttl=60)
    cache.get("k", lambda: "plaintext-in-cache")
    assert "plaintext-in-cache" not in repr(cache)
    assert "plaintext-in-cache" not in repr(cache._entries)


def test_lookups_of_missing_keys_leave_nothing_behind() -> None:
    cache = SecretCache(ttl=60)

    def missing() -> str:
        raise SecretNotFoundError("no secret")

    for n in range(3000):
        with pytest.raises(SecretNotFoundError):
            cache.get(n, missing)
    assert len(cache) == 0


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = SecretCache(ttl=60, max_entries=100)
    for n in range(100):
        cache.get(n, lambda: "v")
    cache.get(0, lambda: "refetched")  # used again: now the most recent
    for n in range(100, 150):
        cache.get(n, lambda: "v")
    assert len(cache) == 100
    assert cache.get(0, lambda: "refetched") == "v"  # kept
    assert cache.get(1, lambda: "refetched") == "refetched"  # evicted


def test_the_bound_is_configurable(chain: CloudChain, monkeypatch: pytest.MonkeyPatch) -> None:
    assert CloudChain(cache_ttl=60)._cache.max_entries == 1024  # type: ignore[union-attr]
    monkeypatch.setenv("CLOUDCHAIN_CACHE_MAX_ENTRIES", "7")
    cached = CloudChain.from_config(cache_ttl=60)
    for n in range(20):
        chain.save("svc", f"u{n}", "v")
        cached.read("svc", f"u{n}")
    assert len(cached._cache) == 7  # type: ignore[arg-type]
