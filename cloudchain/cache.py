"""An optional in-process cache of decrypted secrets, after AWS's secrets caching client.

Plaintext stays in process memory for up to the TTL (and the stale window): the price of
skipping a DynamoDB read and a KMS call on every `read`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Callable, Union

from .errors import EndpointError

log = logging.getLogger(__name__)
Value = Union[str, bytes]

# Each entry refreshes up to this fraction of the TTL early, so many processes started
# together do not all go back to AWS in the same instant.
JITTER = 0.1


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    value: Value | None = field(default=None, repr=False)  # plaintext: never in a repr
    fetched_at: float = 0.0
    refresh_at: float = 0.0


class SecretCache:
    """A thread-safe TTL cache of at most max_entries entries, least recently used evicted
    first; concurrent misses for one key cause a single fetch."""

    def __init__(
        self,
        ttl: float,
        stale_if_error: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 1024,
    ) -> None:
        self.ttl = ttl
        self.stale_if_error = stale_if_error
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"SecretCache(ttl={self.ttl}, stale_if_error={self.stale_if_error}, "
            f"entries={len(self)}/{self.max_entries})"
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: Hashable, fetch: Callable[[], Value]) -> Value:
        """Return the cached value for key, calling fetch when it is missing or due a refresh."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                # An entry is made for every lookup, misses included, so the bound is on
                # lookups: a stream of missing keys evicts old entries instead of growing.
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
        # Per-entry lock: a second thread missing the same key waits here for the first
        # thread's fetch instead of making its own; other keys are not held up.
        with entry.lock:
            now = self._clock()
            if entry.value is not None and now < entry.refresh_at:
                return entry.value
            try:
                value = fetch()
            except BaseException as err:
                stale_until = entry.fetched_at + self.ttl + self.stale_if_error
                if isinstance(err, EndpointError) and entry.value is not None and now < stale_until:
                    log.warning("serving a stale cached value while AWS fails")
                    return entry.value
                if entry.value is None:
                    self._discard(key, entry)  # nothing cached: keep no empty entry
                raise
            entry.value = value
            entry.fetched_at = now
            entry.refresh_at = now + self.ttl * (1 - JITTER * random.random())
            return value

    def _discard(self, key: Hashable, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(key) is entry:
                del self._entries[key]

    def invalidate(self, match: Callable[[Hashable], bool]) -> None:
        """Forget every entry whose key matches."""
        with self._lock:
            for key in [k for k in self._entries if match(k)]:
                del self._entries[key]

    def forget_row(self, tablename: str, service: str, user: str) -> None:
        """Forget every cached version of one row: a save changes "latest", a delete all."""
        row = (tablename, service, user)
        self.invalidate(lambda key: isinstance(key, tuple) and key[:3] == row)
