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
- A refresh starts with a change check (changes.py: one projected Query, no KMS call): a
  secret whose revision is unchanged keeps its plaintext, only the k that changed are
  decrypted again, at once, and users gone from the check are forgotten. Services someone
  watches (/v1/watch) without prefetching are checked on the same schedule; a change of one
  drops what is cached of it. Every check's token goes to the change feed (changefeed.py),
  the one way other parts of the agent learn that a service changed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from ..cache import SecretCache
from ..errors import CloudChainError, EndpointError, SecretNotFoundError, ValidationError
from ..parallel import parallel_map
from ..results import Versioned
from ..tally import Tally
from ..validation import check_row, check_service, check_stage, check_tags, check_version
from .changefeed import ChangeFeed

if TYPE_CHECKING:
    from ..chain import CloudChain
    from ..changes import Changed, ServiceMarks

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long a miss is remembered: short, so a secret saved elsewhere shows up soon.
MISS_TTL = 5.0
# The shortest refresh period, whatever --ttl says: a check is an AWS call.
MIN_PERIOD = 1.0
# Services watched without being prefetched are checked while someone asked in this long.
WATCH_LINGER = 600.0
MAX_WATCHED = 256  # such services at once: each costs a check per period
# How far ahead the due gauge looks at each reload: far beyond any refresh interval.
DUE_HORIZON = 366 * 86_400.0


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
        # Beyond the cache's own counts; kms_calls counts decrypts, one KMS call each.
        self.counters = Tally(
            "refreshes", "aws_errors", "kms_calls", "change_checks", "changes_seen"
        )
        self.prefetch = [check_service(service) for service in prefetch]
        self.feed = ChangeFeed()
        # Per service checked: the last check, and (prefetched) the values it stands for.
        self._marks: dict[str, ServiceMarks] = {}
        self._held: dict[str, dict[str, Versioned]] = {}
        self._watched: dict[str, float] = {}  # watched, not prefetched: when last asked
        self._state = threading.Lock()
        # When each scheduled secret of a prefetched service falls due (ISO 8601 UTC, which
        # sorts as time does), by service: the due gauge counts those past at each scrape.
        self.due_dates: dict[str, list[str]] = {}
        self._due_read: dict[str, float] = {}  # when (monotonic): re-read before the horizon
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
    def _secret_key(
        service: str, user: str, version: int | None, stage: str = "current"
    ) -> tuple[Any, ...]:
        service, user = check_row(service, user)
        if version is not None:
            check_version(version)
        if check_stage(stage) != "current":  # a staged version is cached apart from current
            return ("secret", service, user, version, stage)
        return ("secret", service, user, version)

    def peek_secret(
        self, service: str, user: str, version: int | None = None, stage: str = "current"
    ) -> Versioned | None:
        """A secret, if it can be answered from the cache without waiting; else None."""
        found, value = self.cache.peek(self._secret_key(service, user, version, stage))
        return value if found else None

    def secret(
        self, service: str, user: str, version: int | None = None, stage: str = "current"
    ) -> Versioned:
        """A secret and its version, fetching it if need be."""
        key = self._secret_key(service, user, version, stage)
        return self.cache.get(
            key,
            lambda: self._fetching(
                lambda: self.chain.read_versioned(service, user, version, stage=stage)
            ),
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

    def _check(self, service: str) -> ServiceMarks:
        marks = self._fetching(lambda: self.chain.change_check(service))
        self.counters.add("change_checks")
        return marks

    def load(self, service: str) -> None:
        """Fetch a whole service and store it, and each of its secrets, as kept fresh here;
        forget every cached secret of the service that the answer no longer has."""
        marks = self._check(service)  # first: a write after it is seen by the next check
        found = self._fetching(lambda: self.chain.export_versioned(service))
        self.counters.add("kms_calls", len(found))
        self._store(service, found, marks, marks.since(None))

    def _store(
        self, service: str, found: dict[str, Versioned], marks: ServiceMarks, changed: Changed
    ) -> None:
        self.cache.put(("service", service, ()), found, background=True)
        for user, versioned in found.items():
            self.cache.put(("secret", service, user, None), versioned, background=True)

        def gone(key: Hashable) -> bool:
            if not isinstance(key, tuple) or key[1:2] != (service,):
                return False
            if key[0] == "service":  # a listing by tags: rebuilt at its next read
                return bool(changed) and key[2] != ()
            if len(key) == 5 and key[2] in changed.changed:  # a staged read of a changed row
                return True
            return key[0] == "secret" and key[2] not in found

        self.cache.invalidate(gone)
        with self._state:
            self._held[service], self._marks[service] = found, marks
        self.counters.add("refreshes")
        self.feed.publish(service, marks.token)
        # A save or schedule change moves them; time brings later ones within the horizon.
        read = self._due_read.get(service)
        if changed or read is None or time.monotonic() - read > DUE_HORIZON / 2:
            self._load_due_dates(service)

    def _refresh(self, service: str) -> None:
        """Check a prefetched service and decrypt only what changed since the last check."""
        with self._state:
            before, held = self._marks.get(service), self._held.get(service)
        if before is None or held is None:
            self.load(service)
            return
        marks = self._check(service)
        changed = marks.since(before)
        self.counters.add("changes_seen", len(changed))
        found = {u: v for u, v in held.items() if u not in changed.removed}

        def read(user: str) -> Versioned | None:
            try:
                value = self.chain.read_versioned(service, user)
            except SecretNotFoundError:  # deleted (no KMS call), or purged since the check
                return None
            self.counters.add("kms_calls")
            return value

        fresh = self._fetching(
            lambda: parallel_map(read, changed.changed, self.chain.config.max_workers)
        )
        for user, value in zip(changed.changed, fresh, strict=True):
            if value is None:
                found.pop(user, None)
            else:
                found[user] = value
        self._store(service, dict(sorted(found.items())), marks, changed)

    def _load_due_dates(self, service: str) -> None:
        """Note when the service's scheduled secrets fall due: one projection Query, no KMS.
        A failure keeps what was noted before; the secrets themselves are loaded."""
        try:
            found = self.chain.due(service, within=DUE_HORIZON)
        except CloudChainError as err:
            log.warning("cannot read the rotation schedule of %s: %s", service, err)
            return
        self.due_dates[service] = [d.due_at for d in found]
        self._due_read[service] = time.monotonic()

    def due_now(self) -> int:
        """How many secrets of the prefetched services are due for rotation now."""
        from ..schedule import iso

        now = iso(datetime.now(timezone.utc))
        return sum(1 for dates in list(self.due_dates.values()) for at in dates if at <= now)

    def _reload(self, service: str) -> None:
        """One background refresh: on an AWS outage keep what is held (served stale); on an
        authoritative refusal forget the service, so reads meet the refusal too."""
        try:
            self._refresh(service)
        except EndpointError as err:
            log.warning("cannot refresh prefetched service %s: %s", service, err)
        except CloudChainError as err:
            with self._state:
                self._held.pop(service, None), self._marks.pop(service, None)
            dropped = self.refresh(service)
            log.warning("prefetched service %s refused (%s): %d cached entries dropped",
                        service, err, dropped)  # fmt: skip

    def watch(self, service: str) -> str | None:
        """Keep service checked (it is prefetched, or is now watched for a while); return its
        token as of its last check, or None when it has none yet (see first_check). Never
        calls AWS, so the event loop may call it."""
        service = check_service(service)
        if service not in self.prefetch:
            with self._state:
                if service not in self._watched and len(self._watched) >= MAX_WATCHED:
                    raise ValidationError(f"more than {MAX_WATCHED} services are watched")
                self._watched[service] = time.monotonic()
        return self.feed.token(service)

    def first_check(self, service: str) -> str:
        """Check a service watched for the first time; return its token."""
        marks = self._check(service)
        with self._state:
            self._marks.setdefault(service, marks)
        self.feed.publish(service, marks.token)
        return self.feed.token(service) or marks.token

    def _check_watched(self, service: str) -> None:
        """Check a service watched but not prefetched: a change drops what is cached of it, so
        a read after the watcher wakes asks AWS."""
        try:
            marks = self._check(service)
        except CloudChainError as err:
            log.warning("cannot check watched service %s: %s", service, err)
            return
        with self._state:
            changed = marks.since(self._marks.get(service))
            self._marks[service] = marks
        if self.feed.token(service) is not None and changed:
            self.counters.add("changes_seen", len(changed))
            self.refresh(service)
        self.feed.publish(service, marks.token)

    def start(self) -> None:
        """Load every prefetched service, then keep them fresh in the background."""
        for service in self.prefetch:
            self.load(service)
        self._thread = threading.Thread(target=self._refresh_ahead, name="prefetch", daemon=True)
        self._thread.start()

    def _refresh_ahead(self) -> None:
        # Half the TTL, jittered by a tenth: agents started together drift apart.
        while not self._stop.wait(max(self.cache.ttl * random.uniform(0.45, 0.55), MIN_PERIOD)):
            self.refresh_period()

    def refresh_period(self) -> None:
        """One period's work: refresh each prefetched service, check each watched one."""
        for service in self.prefetch:
            self._reload(service)
        now = time.monotonic()
        with self._state:
            for service, asked in list(self._watched.items()):
                if now - asked > WATCH_LINGER:
                    del self._watched[service]
                    self._marks.pop(service, None)
                    self.feed.forget(service)
            watched = list(self._watched)
        for service in watched:
            self._check_watched(service)

    def stop(self) -> None:
        """Stop refreshing."""
        self._stop.set()
