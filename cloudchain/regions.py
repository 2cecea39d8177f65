"""The regions of a table, in order: home, where every write goes, then the replicas that reads
fail over to (a DynamoDB global table, whose rows AWS replicates, and a KMS multi-Region key,
whose replicas share key material). cloudchain never copies rows between regions itself.

A read tries the home region first, and moves to the next region on an endpoint error, a
timeout, a 5xx, or throttling still failing after its retries: whatever becomes EndpointError.
Not found, access denied and integrity errors are answers, and never fail over. A region that
failed is skipped for failover_cooldown seconds, so a dead region costs one timeout, not one
per read. Each region's clients are built when first needed: with no replicas configured, a
read builds exactly the home region's two clients, as it always did.

Writes stay home: global tables settle concurrent writes in different regions by last writer
wins, which would break check-and-set and the promise that no write is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import NamedTuple, TypeVar

from .calls import AwsCalls
from .clients import Clients
from .config import Config
from .errors import EndpointError
from .store import SecretStore
from .tally import Tally

log = logging.getLogger(__name__)
T = TypeVar("T")
_warned = threading.Event()  # the first failover in a process says so; later ones count


class Place(NamedTuple):
    """One region's way to the table: its clients, store and call wrapper."""

    clients: Clients
    store: SecretStore
    aws: AwsCalls

    @classmethod
    def of(cls, clients: Clients, tablename: str, *, allow_legacy: bool) -> Place:
        """The place the clients reach, for one table."""
        store = SecretStore(clients, tablename, allow_legacy=allow_legacy)
        return cls(clients, store, AwsCalls(tablename, clients))

    def run(self, doing: str, call: Callable[[SecretStore], T]) -> T:
        """Run call on this region's store, its AWS errors translated."""
        return self.aws(doing, lambda: call(self.store))


class Regions:
    """The home region and its replicas; reads fail over in order, writes stay home."""

    def __init__(self, config: Config, clients: Clients) -> None:
        self._config = config
        # The home region's place; a replica's is built when a read first needs it.
        self.home = Place.of(clients, config.tablename, allow_legacy=config.allow_legacy)
        self._places: list[Place | None] = [self.home] + [None] * len(config.replica_regions)
        self._down_until: dict[int, float] = {}
        self._lock = threading.Lock()
        self.counts = Tally("failovers")

    @property
    def home_region(self) -> str:
        """The home region's name."""
        return self.home.clients.region

    def _place(self, index: int) -> Place:
        with self._lock:
            place = self._places[index]
            if place is None:
                clients = self.home.clients.replica(self._config.replica_regions[index - 1])
                place = self._places[index] = Place.of(
                    clients, self._config.tablename, allow_legacy=self._config.allow_legacy
                )
            return place

    def _name(self, index: int) -> str:
        return self.home_region if index == 0 else self._config.replica_regions[index - 1]

    def read(self, doing: str, call: Callable[[SecretStore], T]) -> T:
        """Run a read on the store of the first region that answers."""
        return self.read_place(lambda place: place.run(doing, call))

    def read_place(self, call: Callable[[Place], T]) -> T:
        """Run a read of several calls in the first region that answers, all in that one."""
        if len(self._places) == 1:
            return call(self.home)
        now = time.monotonic()
        order = list(range(len(self._places)))
        with self._lock:
            usable = [i for i in order if self._down_until.get(i, 0.0) <= now] or order
        failed: list[tuple[int, EndpointError]] = []
        for index in usable:
            if index and self._name(index) == self.home_region:
                continue  # the home region again (`--region` named a replica)
            try:
                result = call(self._place(index))
            except EndpointError as err:
                with self._lock:
                    self._down_until[index] = time.monotonic() + self._config.failover_cooldown
                failed.append((index, err))
                continue
            if index != 0:
                self._failed_over(failed, index)
            return result
        if not failed:  # nothing was tried: the only other region is the home one
            return call(self.home)
        raise failed[-1][1]

    def _failed_over(self, failed: list[tuple[int, EndpointError]], index: int) -> None:
        self.counts.add("failovers")
        if not _warned.is_set():
            _warned.set()
            gone = self._name(failed[0][0]) if failed else f"{self.home_region} (cooling down)"
            log.warning(
                "%s did not answer; reading from the replica in %s, which may lag by a second",
                gone,
                self._name(index),
            )

    def write(self, call: Callable[[], T]) -> T:
        """Run a write in the home region; when it is down, fail at once, saying why."""
        if len(self._places) == 1:
            return call()
        with self._lock:
            cooling = self._down_until.get(0, 0.0) > time.monotonic()
        if cooling:
            raise EndpointError(self._home_down("it failed moments ago"))
        try:
            return call()
        except EndpointError as err:
            with self._lock:
                self._down_until[0] = time.monotonic() + self._config.failover_cooldown
            raise EndpointError(self._home_down(str(err)), hint=err.hint) from err

    def _home_down(self, why: str) -> str:
        return (
            f"the home region {self.home_region} is unreachable ({why}); writes are not failed over "
            "to replicas, but reads still are"
        )
