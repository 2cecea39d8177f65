"""A cache of decrypted secrets, after AWS's secrets caching client: the optional in-process
cache of CloudChain, and the cache of cchain-agent.

Plaintext stays in memory for up to the TTL (and the stale window): the price of skipping a
DynamoDB read and a KMS call on every read.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import EndpointError, SecretNotFoundError
from .tally import Tally

log = logging.getLogger(__name__)
T = TypeVar("T")

# Each entry refreshes up to this fraction of the TTL early, so many processes started
# together do not all go back to AWS in the same instant.
JITTER = 0.1


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    value: Any = field(default=None, repr=False)  # plaintext: never in a repr
    missing: SecretNotFoundError | None = None  # a miss, held for miss_ttl
    fetched_at: float = 0.0
    refresh_at: float = 0.0
    # Kept fresh by someone else (the agent's prefetch): a read never fetches it while it is
    # within its stale window.
    background: bool = False

    @property
    def held(self) -> bool:
        return self.value is not None or self.missing is not None


def cache_stats() -> Tally:
    """What a cache did, counted since it was made: hits (answered from the cache), misses
    (fetched), stale (answered past the TTL: AWS failing, or a background refresh late) and
    errors (fetches that failed)."""
    return Tally("hits", "misses", "stale", "errors")


class SecretCache:
    """A thread-safe TTL cache of at most max_entries entries, least recently used evicted
    first; concurrent misses for one key cause a single fetch.

    miss_ttl > 0 holds a SecretNotFoundError that long, as an entry like any other. Entries
    put with background=True (the agent's prefetch) are pinned: they sit outside the bound,
    so no stream of lookups can evict them, and leave only when invalidated.
    """

    def __init__(
        self,
        ttl: float,
        stale_if_error: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 1024,
        miss_ttl: float = 0.0,
    ) -> None:
        self.ttl = ttl
        self.stale_if_error = stale_if_error
        self.max_entries = max_entries
        self.miss_ttl = miss_ttl
        self.stats = cache_stats()
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._pinned: dict[Hashable, _Entry] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"SecretCache(ttl={self.ttl}, stale_if_error={self.stale_if_error}, "
            f"entries={len(self)}/{self.max_entries})"
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries) + len(self._pinned)

    def _entry(self, key: Hashable) -> _Entry:
        with self._lock:
            pinned = self._pinned.get(key)
            if pinned is not None:
                return pinned
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                # An entry is made for every lookup, misses included, so the bound is on
                # lookups: a stream of missing keys evicts old entries instead of growing.
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
            return entry

    def _answer(self, entry: _Entry, counter: str) -> Any:
        self.stats.add(counter)
        if entry.missing is not None:
            raise SecretNotFoundError(str(entry.missing))
        return entry.value

    def peek(self, key: Hashable) -> tuple[bool, Any]:
        """Return (True, value) if key can be answered now without fetching, else
        (False, None); never waits, not even for a fetch under way (a cached miss raises
        SecretNotFoundError)."""
        with self._lock:
            entry = self._pinned.get(key) or self._entries.get(key)
            if key in self._entries:
                self._entries.move_to_end(key)
        if entry is None or not entry.lock.acquire(blocking=False):
            return False, None
        try:
            answer = self._ready(entry, self._clock())
            return (True, self._answer(entry, answer)) if answer else (False, None)
        finally:
            entry.lock.release()

    def _stale_until(self, entry: _Entry) -> float:
        return entry.fetched_at + self.ttl + self.stale_if_error

    def _ready(self, entry: _Entry, now: float) -> str | None:
        """How entry answers now without a fetch: "hits" (fresh), "stale" (kept fresh in the
        background and within its stale window), or None (it must be fetched)."""
        if entry.held and now < entry.refresh_at:
            return "hits"
        if entry.background and entry.value is not None and now < self._stale_until(entry):
            return "stale"
        return None

    def get(self, key: Hashable, fetch: Callable[[], T]) -> T:
        """Return the cached value for key, calling fetch when it is missing or due a refresh."""
        entry = self._entry(key)
        # Per-entry lock: a second thread missing the same key waits here for the first
        # thread's fetch instead of making its own; other keys are not held up.
        with entry.lock:
            now = self._clock()
            answer = self._ready(entry, now)
            if answer:
                return self._answer(entry, answer)  # type: ignore[no-any-return]
            stale_until = self._stale_until(entry)
            self.stats.add("misses")
            try:
                value = fetch()
            except SecretNotFoundError as err:
                self.stats.add("errors")
                if self.miss_ttl > 0:
                    self._hold(entry, None, err, now, self.miss_ttl)
                elif not entry.held:
                    self._discard(key, entry)
                raise
            except BaseException as err:
                self.stats.add("errors")
                if isinstance(err, EndpointError) and entry.value is not None and now < stale_until:
                    log.warning("serving a stale cached value while AWS fails")
                    return self._answer(entry, "stale")  # type: ignore[no-any-return]
                if not entry.held:
                    self._discard(key, entry)  # nothing cached: keep no empty entry
                raise
            self._hold(entry, value, None, now, self.ttl)
            return value

    def _hold(
        self,
        entry: _Entry,
        value: Any,
        missing: SecretNotFoundError | None,
        now: float,
        ttl: float,
    ) -> None:
        entry.value, entry.missing = value, missing
        entry.fetched_at = now
        entry.refresh_at = now + ttl * (1 - JITTER * random.random())

    def put(self, key: Hashable, value: Any, *, background: bool = False) -> None:
        """Store a value fetched elsewhere; background: kept fresh by its caller, and pinned."""
        if background:
            with self._lock:
                entry = self._pinned.get(key) or self._entries.pop(key, None) or _Entry()
                self._pinned[key] = entry
        else:
            entry = self._entry(key)
        with entry.lock:
            self._hold(entry, value, None, self._clock(), self.ttl)
            entry.background = background

    def _discard(self, key: Hashable, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(key) is entry:
                del self._entries[key]

    def invalidate(self, match: Callable[[Hashable], bool]) -> int:
        """Forget every entry whose key matches; return how many."""
        with self._lock:
            count = 0
            for entries in (self._entries, self._pinned):
                keys = [k for k in entries if match(k)]
                for key in keys:
                    del entries[key]
                count += len(keys)
        return count

    def forget_row(self, tablename: str, service: str, user: str) -> None:
        """Forget every cached version of one row: a save changes "latest", a delete all."""
        row = (tablename, service, user)
        self.invalidate(lambda key: isinstance(key, tuple) and key[:3] == row)
