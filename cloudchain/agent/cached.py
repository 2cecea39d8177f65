"""What the agent serves: secrets and whole services, through one bounded cache.

- A read that misses fetches once, however many clients ask at the same time.
- A secret that does not exist is remembered for a few seconds too (it counts toward the
  bound), so a client asking in a loop does not become a loop of AWS calls.
- While AWS fails (unreachable, throttling, 5xx), an expired value is served for up to
  stale_if_error seconds more; an authoritative answer (not found, access denied) never is.
- A prefetched service is loaded at start and refreshed in the background at half its TTL, so
  a read of it never waits for AWS. Its entries are pinned outside the cache's bound. A
  reload that succeeds is the truth: a user it no longer returns is forgotten at once (the
  next read asks AWS, which says not found). A reload that AWS refuses outright (access
  denied, a disabled key) forgets the whole service, so nothing stale outlives the refusal;
  only a reload that could not reach AWS leaves the old values to be served stale.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..cache import SecretCache
from ..errors import CloudChainError, EndpointError, SecretNotFoundError, ValidationError
from ..results import Versioned
from ..tally import Tally
from ..validation import check_row, check_service, check_tags, check_version

if TYPE_CHECKING:
    from ..chain import CloudChain

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long a miss is remembered: short, so a secret saved elsewhere shows up soon.
MISS_TTL = 5.0


class CachedSecrets:
    """The agent's view of the table: reads through a cache, prefetch in the background."""

    def __init__(
        self,
        chain: CloudChain,
        *,
        ttl: float,
        stale_if_error: float,
        max_entries: int,
        prefetch: list[str],
    ) -> None:
        self.chain = chain
        self.cache = SecretCache(
            ttl, stale_if_error, max_entries=max_entries, miss_ttl=min(MISS_TTL, ttl)
        )
        self.counters = Tally("refreshes", "aws_errors")  # beyond the cache's own counts
        self.prefetch = [check_service(service) for service in prefetch]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _fetching(self, call: Callable[[], T]) -> T:
        """Run a fetch, counting the failures that came from AWS (not a missing secret)."""
        try:
            return call()
        except (SecretNotFoundError, ValidationError):
            raise
        except CloudChainError:
            self.counters.add("aws_errors")
            raise

    @staticmethod
    def _secret_key(service: str, user: str, version: int | None) -> tuple[Any, ...]:
        service, user = check_row(service, user)
        if version is not None:
            check_version(version)
        return ("secret", service, user, version)

    def peek_secret(self, service: str, user: str, version: int | None = None) -> Versioned | None:
        """A secret, if it can be answered from the cache without waiting; else None."""
        found, value = self.cache.peek(self._secret_key(service, user, version))
        return value if found else None

    def secret(self, service: str, user: str, version: int | None = None) -> Versioned:
        """A secret and its version, fetching it if need be."""
        key = self._secret_key(service, user, version)
        return self.cache.get(
            key, lambda: self._fetching(lambda: self.chain.read_versioned(service, user, version))
        )

    def service(self, service: str, tags: Mapping[str, str] | None = None) -> dict[str, Versioned]:
        """Every current secret of a service (with all of tags)."""
        service = check_service(service)
        wanted = check_tags(dict(tags or {}))
        key = ("service", service, tuple(sorted(wanted.items())))
        return self.cache.get(
            key, lambda: self._fetching(lambda: self.chain.export_versioned(service, tags=wanted))
        )

    def refresh(self, service: str, user: str | None = None) -> int:
        """Drop what is cached of service (or one user of it); return how many entries."""
        service = check_service(service)
        if user is not None:
            check_row(service, user)

        def match(key: Hashable) -> bool:
            if not isinstance(key, tuple) or len(key) < 2 or key[1] != service:
                return False
            # A user's change changes its service's listing too.
            return user is None or key[0] == "service" or key[2] == user

        return self.cache.invalidate(match)

    def load(self, service: str) -> None:
        """Fetch a whole service and store it, and each of its secrets, as kept fresh here;
        forget every cached secret of the service that the answer no longer has."""
        found = self._fetching(lambda: self.chain.export_versioned(service))
        self.cache.put(("service", service, ()), found, background=True)
        for user, versioned in found.items():
            self.cache.put(("secret", service, user, None), versioned, background=True)

        def gone(key: Hashable) -> bool:
            return isinstance(key, tuple) and key[:2] == ("secret", service) and key[2] not in found

        self.cache.invalidate(gone)
        self.counters.add("refreshes")

    def _reload(self, service: str) -> None:
        """One background reload: on an AWS outage keep what is held (served stale); on an
        authoritative refusal forget the service, so reads meet the refusal too."""
        try:
            self.load(service)
        except EndpointError as err:
            log.warning("cannot refresh prefetched service %s: %s", service, err)
        except CloudChainError as err:
            dropped = self.refresh(service)
            log.warning("prefetched service %s refused (%s): %d cached entries dropped",
                        service, err, dropped)  # fmt: skip

    def start(self) -> None:
        """Load every prefetched service, then keep them fresh in the background."""
        for service in self.prefetch:
            self.load(service)
        if self.prefetch:
            self._thread = threading.Thread(
                target=self._refresh_ahead, name="prefetch", daemon=True
            )
            self._thread.start()

    def _refresh_ahead(self) -> None:
        while not self._stop.wait(self.cache.ttl * random.uniform(0.45, 0.55)):
            for service in self.prefetch:
                self._reload(service)

    def stop(self) -> None:
        """Stop refreshing."""
        self._stop.set()
