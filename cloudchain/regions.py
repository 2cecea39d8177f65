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

log = logging.getLogger(__name__)
T = TypeVar("T")
_warned = threading.Event()  # the first failover in a process says so; later ones count


class Place(NamedTuple):
    """One region's way to the table: its clients, store and call wrapper."""

    region: str | None  # None: the home region, named on demand (it may come from AWS's chain)
    clients: Clients
    store: SecretStore
    aws: AwsCalls


class Regions:
    """The home region and its replicas; reads fail over in order, writes stay home."""

    def __init__(self, config: Config, home: Place) -> None:
        self._config = config
        self._places: list[Place | None] = [home] + [None] * len(config.replica_regions)
        self._down_until: dict[int, float] = {}
        self._lock = threading.Lock()
        self.failovers = 0

    @property
    def home(self) -> str:
        """The home region's name."""
        return self._places[0].clients.region  # type: ignore[union-attr]

    def _place(self, index: int) -> Place:
        with self._lock:
            place = self._places[index]
            if place is None:
                home = self._places[0]
                assert home is not None
                region = self._config.replica_regions[index - 1]
                clients = home.clients.replica(region)
                store = SecretStore(
                    clients, home.store.tablename, allow_legacy=home.store.allow_legacy
                )
                aws = AwsCalls(home.aws.tablename, clients.endpoint_for("dynamodb", region),
                               lambda: region)  # fmt: skip
                place = self._places[index] = Place(region, clients, store, aws)
            return place

    def _name(self, index: int) -> str:
        return self.home if index == 0 else self._config.replica_regions[index - 1]

    def read(self, call: Callable[[SecretStore, AwsCalls], T]) -> T:
        """Run a read in the first region that answers."""
        if len(self._places) == 1:
            home = self._places[0]
            assert home is not None
            return call(home.store, home.aws)
        now = time.monotonic()
        order = list(range(len(self._places)))
        with self._lock:
            usable = [i for i in order if self._down_until.get(i, 0.0) <= now] or order
        failed: list[tuple[int, EndpointError]] = []
        for index in usable:
            if index and self._name(index) == self.home:
                continue  # the home region again (`--region` named a replica)
            place = self._place(index)
            try:
                result = call(place.store, place.aws)
            except EndpointError as err:
                with self._lock:
                    self._down_until[index] = time.monotonic() + self._config.failover_cooldown
                failed.append((index, err))
                continue
            if index != 0:
                self._failed_over(failed, index)
            return result
        if not failed:  # nothing was tried: the only other region is the home one
            return call(self._place(0).store, self._place(0).aws)
        raise failed[-1][1]

    def _failed_over(self, failed: list[tuple[int, EndpointError]], index: int) -> None:
        with self._lock:
            self.failovers += 1
        if not _warned.is_set():
            _warned.set()
            gone = self._name(failed[0][0]) if failed else f"{self.home} (cooling down)"
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
            f"the home region {self.home} is unreachable ({why}); writes are not failed over "
            "to replicas, but reads still are"
        )
