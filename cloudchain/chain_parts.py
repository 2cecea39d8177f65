"""What a CloudChain is made of: its Config, its AWS clients and regions, the optional cache,
and the parts built on first use (who is calling, the row writer, the service operations), so
that a process that only reads one secret imports none of the write side."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .cache import SecretCache
from .clients import Clients
from .config import Config
from .errors import CloudChainConfigError
from .regions import Regions

if TYPE_CHECKING:
    import boto3

    from .identity import CallerIdentity
    from .service_ops import ServiceOperations
    from .staging import StagedWriter

T = TypeVar("T")


class ChainParts:
    """The parts of one CloudChain; CloudChain adds the public API over them."""

    def __init__(self, config: Config, session: boto3.Session | None) -> None:
        self.config = c = config
        self._clients = Clients(c, session)
        self._regions = Regions(c, self._clients)
        self._store, self._aws = self._regions.home.store, self._regions.home.aws
        self._cache = (
            SecretCache(c.cache_ttl, c.stale_if_error, max_entries=c.cache_max_entries)
            if c.cache_ttl > 0
            else None
        )
        # Built on first use: a process that only reads one secret imports none of them.
        self._parts: dict[str, Any] = {}
        self._parts_lock = threading.RLock()  # one part builds another (service -> writer)

    def _part(self, name: str, build: Callable[[], T]) -> T:
        with self._parts_lock:
            if name not in self._parts:
                self._parts[name] = build()
            part: T = self._parts[name]
            return part

    @property
    def _identity(self) -> CallerIdentity:
        from . import identity

        return self._part(
            "identity",
            lambda: identity.CallerIdentity(lambda: self._clients.get("sts", quick=True)),
        )

    @property
    def _writer(self) -> StagedWriter:
        def build() -> StagedWriter:
            from . import staging

            c = self.config
            return staging.StagedWriter(
                self._store,
                saved_by=self._identity.arn,
                history_size=c.history_size,
                recovery_days=c.recovery_days,
                # A write that keeps losing races retries for as long as a reply may take.
                conflict_deadline=c.read_timeout,
                new_rotate_every=c.rotate_every,
            )

        return self._part("writer", build)

    @property
    def _service(self) -> ServiceOperations:
        def build() -> ServiceOperations:
            from . import service_ops

            return service_ops.ServiceOperations(
                self.config, self._regions, self._writer, self._require_key, self._forget
            )

        return self._part("service", build)

    @property
    def failovers(self) -> int:
        """How many reads this instance served from a replica region."""
        return self._regions.counts.failovers

    @property
    def _dynamodb(self) -> Any:
        return self._store.dynamodb

    @property
    def _kms(self) -> Any:
        return self._store.kms

    def _require_key(self, service: str) -> str:
        if not self.config.keyalias:
            raise CloudChainConfigError(
                f"cannot save into {service}: no KMS key alias is configured; set keyalias "
                "under [IAMKMS] in ~/.cchainrc, CLOUDCHAIN_KEY_ALIAS, --key-alias, "
                "or CloudChain(keyalias=...)"
            )
        return self.config.keyalias

    def _forget(self, service: str, user: str) -> None:
        if self._cache is not None:
            self._cache.forget_row(self.config.tablename, service, user)
