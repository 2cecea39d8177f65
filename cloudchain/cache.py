"""An optional in-process cache of decrypted secrets, after AWS's secrets caching client.

Plaintext stays in process memory for up to the TTL (and the stale window): the price of
skipping a DynamoDB read and a KMS call on every `read`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
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
    """A thread-safe TTL cache; concurrent misses for one key cause a single fetch."""

    def __init__(
        self,
        ttl: float,
        stale_if_error: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.stale_if_error = stale_if_error
        self._clock = clock
        self._entries: dict[Hashable, _Entry] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SecretCache(ttl={self.ttl}, stale_if_error={self.stale_if_error}, entries={len(self._entries)})"

    def get(self, key: Hashable, fetch: Callable[[], Value]) -> Value:
        """Return the cached value for key, calling fetch when it is missing or due a refresh."""
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
        # Per-entry lock: a second thread missing the same key waits here for the first
        # thread's fetch instead of making its own; other keys are not held up.
        with entry.lock:
            now = self._clock()
            if entry.value is not None and now < entry.refresh_at:
                return entry.value
            try:
                value = fetch()
            except EndpointError:
                stale_until = entry.fetched_at + self.ttl + self.stale_if_error
                if entry.value is not None and now < stale_until:
                    log.warning("serving a stale cached value while AWS fails")
                    return entry.value
                raise
            entry.value = value
            entry.fetched_at = now
            entry.refresh_at = now + self.ttl * (1 - JITTER * random.random())
            return value

    def invalidate(self, match: Callable[[Hashable], bool]) -> None:
        """Forget every entry whose key matches."""
        with self._lock:
            for key in [k for k in self._entries if match(k)]:
                del self._entries[key]
