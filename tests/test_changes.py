"""The change check (changes.py) and the agent's refresh built on it (agent/cached.py): a check
reads no secret and calls no KMS, a refresh with nothing changed decrypts nothing, and k
changed secrets cost k decrypts, at once."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import CallCounter

from cloudchain import CloudChain
from cloudchain.agent.cached import CachedSecrets
from cloudchain.agent.changefeed import ChangeFeed
from cloudchain.errors import EndpointError, SecretNotFoundError

SERVICE = "web"


def _queries(chain: CloudChain) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    chain._dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.Query", lambda params, **_: seen.append(dict(params))
    )
    return seen


def test_change_check_projects_no_secret_and_calls_no_kms(
    chain: CloudChain, calls: CallCounter
) -> None:
    for user in ("a", "b"):
        chain.save(SERVICE, user, f"value-{user}")
    chain.set_tags(SERVICE, "a", {"env": "prod"})
    queries = _queries(chain)
    before = len(calls.operations)
    marks = chain.change_check(SERVICE)
    assert calls.operations[before:] == ["Query"]
    (query,) = queries
    projected = {query["ExpressionAttributeNames"][n.strip()] for n in
                 query["ProjectionExpression"].split(",")}  # fmt: skip
    assert projected == {"Service", "Username", "Version", "Revision", "Tags"}
    assert query["ConsistentRead"] is True
    assert sorted(marks.rows) == ["a", "b"]
    assert marks.rows["a"].tags == (("env", "prod"),)
    assert "value-" not in repr(marks) and marks.token.isalnum()


def test_change_check_sees_every_kind_of_write(chain: CloudChain) -> None:
    chain.save(SERVICE, "a", "one")
    chain.save(SERVICE, "gone", "x")
    first = chain.change_check(SERVICE)
    assert not chain.change_check(SERVICE).since(first)
    assert chain.change_check(SERVICE).token == first.token
    steps = [
        (lambda: chain.save(SERVICE, "a", "two"), ("a",), ()),
        (lambda: chain.save(SERVICE, "new", "n"), ("new",), ()),
        (lambda: chain.delete(SERVICE, "a"), ("a",), ()),
        (lambda: chain.undelete(SERVICE, "a"), ("a",), ()),
        (lambda: chain.set_tags(SERVICE, "new", {"k": "v"}), ("new",), ()),
        (lambda: chain.delete(SERVICE, "gone"), ("gone",), ()),
        (lambda: chain.purge(SERVICE, "gone"), (), ("gone",)),
    ]
    before = first
    for write, changed, removed in steps:
        write()
        now = chain.change_check(SERVICE)
        seen = now.since(before)
        assert (seen.changed, seen.removed) == (changed, removed)
        assert now.token != before.token
        before = now


@pytest.fixture
def agent_cache(chain: CloudChain) -> CachedSecrets:
    for n in range(5):
        chain.save(SERVICE, f"u{n}", f"first-{n}")
    # A TTL of an hour: the refresh thread never fires; the test refreshes by hand.
    cached = CachedSecrets(chain, ttl=3600, stale_if_error=3600, max_entries=100,
                           prefetch=[SERVICE])  # fmt: skip
    cached.start()
    yield cached
    cached.stop()


def _values(cached: CachedSecrets) -> dict[str, Any]:
    return {u: v.value for u, v in cached.service(SERVICE).items()}


def test_refresh_with_nothing_changed_makes_no_kms_call(
    chain: CloudChain, agent_cache: CachedSecrets
) -> None:
    calls = CallCounter(chain._dynamodb, chain._kms)
    assert agent_cache.counters.kms_calls == 5
    for _ in range(3):
        agent_cache._reload(SERVICE)
    assert calls.operations == ["Query"] * 3
    assert agent_cache.counters.kms_calls == 5
    assert agent_cache.counters.change_checks == 4 and agent_cache.counters.changes_seen == 0
    assert _values(agent_cache) == {f"u{n}": f"first-{n}" for n in range(5)}
    assert agent_cache.cache.stats.misses == 0  # served from the prefetch, renewed


def test_refresh_decrypts_only_what_changed_at_once(
    chain: CloudChain, agent_cache: CachedSecrets
) -> None:
    chain.save(SERVICE, "u1", "second-1")
    chain.save(SERVICE, "u3", "second-3")
    chain.save(SERVICE, "u9", "new-9")
    chain.delete(SERVICE, "u4")
    calls = CallCounter(chain._dynamodb, chain._kms)
    agent_cache._reload(SERVICE)
    assert calls.count("Decrypt") == 3  # u1, u3, u9: at the refresh, not at a later read
    assert agent_cache.counters.changes_seen == 4
    misses = agent_cache.cache.stats.misses
    assert _values(agent_cache) == {"u0": "first-0", "u1": "second-1", "u2": "first-2",
                                    "u3": "second-3", "u9": "new-9"}  # fmt: skip
    assert agent_cache.secret(SERVICE, "u1").value == "second-1"
    assert agent_cache.cache.stats.misses == misses
    with pytest.raises(SecretNotFoundError):
        agent_cache.secret(SERVICE, "u4")
    chain.undelete(SERVICE, "u4")
    chain.delete(SERVICE, "u0")
    chain.purge(SERVICE, "u0")
    agent_cache._reload(SERVICE)
    assert sorted(_values(agent_cache)) == ["u1", "u2", "u3", "u4", "u9"]


def test_a_promote_made_elsewhere_is_seen_and_decrypted_once_a_staging_is_not(
    chain: CloudChain, agent_cache: CachedSecrets
) -> None:
    heard: list[str] = []
    agent_cache.feed.subscribe(lambda service, token: heard.append(token))
    chain.save(SERVICE, "u1", "staged", stage="pending")  # readers still get the current value
    calls = CallCounter(chain._dynamodb, chain._kms)
    agent_cache._reload(SERVICE)
    assert agent_cache.secret(SERVICE, "u1").value == "first-1"
    assert calls.count("Decrypt") <= 1  # the row changed (its revision), its current did not
    chain.promote(SERVICE, "u1")  # elsewhere: the agent is not told
    calls = CallCounter(chain._dynamodb, chain._kms)
    agent_cache._reload(SERVICE)
    assert calls.count("Decrypt") == 1 and len(heard) == 2
    assert agent_cache.secret(SERVICE, "u1").value == "staged"
    assert agent_cache.secret(SERVICE, "u1").version == 2


def test_feed_tells_listeners_of_a_change_only(
    chain: CloudChain, agent_cache: CachedSecrets
) -> None:
    heard: list[tuple[str, str]] = []
    stop = agent_cache.feed.subscribe(lambda service, token: heard.append((service, token)))
    first = agent_cache.feed.token(SERVICE)
    agent_cache._reload(SERVICE)
    assert heard == [] and agent_cache.feed.token(SERVICE) == first
    chain.save(SERVICE, "u2", "second-2")
    agent_cache._reload(SERVICE)
    assert heard == [(SERVICE, agent_cache.feed.token(SERVICE))] and heard[0][1] != first
    # The listener runs after the change is in the cache.
    assert agent_cache.service(SERVICE)["u2"].value == "second-2"
    stop()
    chain.save(SERVICE, "u2", "third-2")
    agent_cache._reload(SERVICE)
    assert len(heard) == 1


def test_refresh_during_an_outage_keeps_values_and_token(
    chain: CloudChain, agent_cache: CachedSecrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = agent_cache.feed.token(SERVICE)

    def down(service: str) -> Any:
        raise EndpointError("could not connect")

    monkeypatch.setattr(chain, "change_check", down)
    agent_cache._reload(SERVICE)
    assert agent_cache.feed.token(SERVICE) == token
    assert _values(agent_cache)["u0"] == "first-0"


def test_a_watched_service_not_prefetched_is_checked_and_dropped_on_change(
    chain: CloudChain, agent_cache: CachedSecrets
) -> None:
    chain.save("other", "x", "one")
    assert agent_cache.watch("other") is None
    token = agent_cache.first_check("other")
    assert agent_cache.watch("other") == token
    assert agent_cache.service("other")["x"].value == "one"
    agent_cache._check_watched("other")
    assert agent_cache.feed.token("other") == token
    chain.save("other", "x", "two")
    agent_cache._check_watched("other")
    assert agent_cache.feed.token("other") != token
    assert agent_cache.service("other")["x"].value == "two"


def test_feed_wait_returns_at_a_change_or_timeout() -> None:
    import threading

    feed = ChangeFeed()
    feed.publish("s", "t1")
    assert feed.wait("s", "t1", 0.05) == "t1"
    threading.Timer(0.05, feed.publish, ("s", "t2")).start()
    assert feed.wait("s", "t1", 5) == "t2"


def test_refresh_period_is_half_the_ttl_jittered_by_a_tenth(chain: CloudChain) -> None:
    cached = CachedSecrets(chain, ttl=100, stale_if_error=0, max_entries=10, prefetch=[])
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return len(waits) >= 200  # stop after 200 periods

    cached._stop.wait = wait  # type: ignore[method-assign]
    cached._refresh_ahead()
    assert all(45 <= w <= 55 for w in waits)
    assert max(waits) - min(waits) > 5  # spread, not one fixed period


def test_watched_services_are_bounded_and_forgotten_when_nobody_asks(
    chain: CloudChain, agent_cache: CachedSecrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloudchain.agent import cached as cached_module
    from cloudchain.errors import ValidationError

    monkeypatch.setattr(cached_module, "MAX_WATCHED", 2)
    agent_cache.watch("one"), agent_cache.watch("two")
    agent_cache.watch(SERVICE)  # prefetched: checked anyway, not counted
    with pytest.raises(ValidationError, match="more than 2 services are watched"):
        agent_cache.watch("three")
    agent_cache.first_check("one")
    monkeypatch.setattr(cached_module, "WATCH_LINGER", -1.0)
    agent_cache.refresh_period()
    assert agent_cache.feed.token("one") is None and agent_cache.watch("three") is None


def test_watch_timeout_is_bounded_and_checked() -> None:
    from cloudchain.agent.routes import Problem
    from cloudchain.agent.watching import watch_query
    from cloudchain.errors import ValidationError

    assert watch_query({"service": ["web"]}) == ("web", None, 60.0)
    assert watch_query({"service": ["web"], "since": ["ab12"], "timeout": ["1h"]})[2] == 300.0
    assert watch_query({"service": ["web"], "timeout": ["2.5"]})[2] == 2.5
    for bad in ({"service": ["web"], "timeout": ["-1"]}, {"service": ["web"], "timeout": ["0"]}):
        with pytest.raises(ValidationError):
            watch_query(bad)
    with pytest.raises(Problem):
        watch_query({"service": ["web"], "since": ["../x"]})
