"""The CloudChain class: the public API over one table and key.

It checks input before any AWS call, translates AWS errors (errors.aws_errors) and keeps the
optional cache. Storage is store.SecretStore; operations over a whole service or table come
from service_ops.ServiceOperations.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

from .cache import SecretCache
from .clients import Clients
from .config import DEFAULT_TABLE, RETRY_MODES, Config, load_config
from .errors import (
    CloudChainConfigError,
    IntegrityError,
    ThrottledError,
    aws_errors,
)
from .results import Entry, Secret, SetupResult, VersionInfo
from .service_ops import ServiceOperations
from .store import SecretStore
from .validation import (
    check_choice,
    check_row,
    check_seconds,
    check_version,
    check_whole,
    secret_bytes,
)

if TYPE_CHECKING:
    import boto3


_DEFAULTS = Config()
T = TypeVar("T")
# Rounds of botocore's own attempts a still-throttled call gets (see CloudChain._aws).
THROTTLE_ROUNDS = 3
THROTTLE_BASE = 0.5


class CloudChain(ServiceOperations):
    """A handle on one secrets table and its KMS key; safe to share between threads."""

    def __init__(
        self,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        tablename: str = DEFAULT_TABLE,
        keyalias: str | None = None,
        kms_endpoint_url: str | None = None,
        profile_name: str | None = None,
        connect_timeout: float = _DEFAULTS.connect_timeout,
        read_timeout: float = _DEFAULTS.read_timeout,
        max_attempts: int = _DEFAULTS.max_attempts,
        retry_mode: str = _DEFAULTS.retry_mode,
        history_size: int = _DEFAULTS.history_size,
        max_workers: int = _DEFAULTS.max_workers,
        cache_ttl: float = _DEFAULTS.cache_ttl,
        stale_if_error: float = _DEFAULTS.stale_if_error,
        session: boto3.Session | None = None,
    ) -> None:
        self.config = Config(
            region_name=region_name or None,
            endpoint_url=endpoint_url or None,
            kms_endpoint_url=kms_endpoint_url or None,
            tablename=tablename or DEFAULT_TABLE,
            keyalias=keyalias or None,
            profile_name=profile_name or None,
            connect_timeout=check_seconds(connect_timeout, "connect_timeout"),
            read_timeout=check_seconds(read_timeout, "read_timeout"),
            max_attempts=check_whole(max_attempts, "max_attempts"),
            retry_mode=check_choice(retry_mode, "retry_mode", RETRY_MODES),
            history_size=check_whole(history_size, "history_size"),
            max_workers=check_whole(max_workers, "max_workers"),
            cache_ttl=check_seconds(cache_ttl, "cache_ttl", zero_ok=True),
            stale_if_error=check_seconds(stale_if_error, "stale_if_error", zero_ok=True),
        )
        self._clients = Clients(self.config, session)
        self._store = SecretStore(self._clients, self.config.tablename, self.config.history_size)
        c = self.config
        self._cache = SecretCache(c.cache_ttl, c.stale_if_error) if c.cache_ttl > 0 else None

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        session: boto3.Session | None = None,
        **overrides: Any,
    ) -> CloudChain:
        """Build a CloudChain from the config file and environment; keyword overrides win."""
        return cls.from_settings(load_config(overrides, path=path), session=session)

    @classmethod
    def from_settings(cls, config: Config, *, session: boto3.Session | None = None) -> CloudChain:
        """Build a CloudChain from an already resolved Config."""
        return cls(**asdict(config), session=session)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"CloudChain(tablename={c.tablename!r}, region_name={c.region_name!r}, "
            f"endpoint_url={c.endpoint_url!r}, keyalias={c.keyalias!r})"
        )

    @property
    def _dynamodb(self) -> Any:
        return self._store.dynamodb

    @property
    def _kms(self) -> Any:
        return self._store.kms

    def _aws(self, doing: str, call: Callable[[], T]) -> T:
        """Run call, translating AWS errors; give a still-throttled call more rounds.

        botocore already retried each request max_attempts times. Throttling is AWS asking
        for patience rather than a failure, and one throttled secret would fail a whole
        export, so a call that is still throttled gets THROTTLE_ROUNDS rounds in all, with
        full-jitter backoff. Every call here is safe to repeat: a throttled request did
        nothing, and writes are conditional.
        """
        for attempt in range(THROTTLE_ROUNDS):
            try:
                with aws_errors(
                    f"{doing} table '{self.config.tablename}'", self.config.endpoint_url
                ):
                    return call()
            except ThrottledError:
                if attempt == THROTTLE_ROUNDS - 1:
                    raise
                import random

                time.sleep(random.uniform(0, THROTTLE_BASE * 2**attempt))
        raise AssertionError("unreachable")

    def _require_key(self, service: str) -> str:
        if not self.config.keyalias:
            raise CloudChainConfigError(
                f"cannot save into {service}: no KMS key alias is configured; set keyalias "
                "under [IAMKMS] in ~/.cchainrc, CLOUDCHAIN_KEY_ALIAS, --key-alias, "
                "or CloudChain(keyalias=...)"
            )
        return self.config.keyalias

    def _value(self, service: str, user: str, plaintext: bytes, binary: bool) -> Secret:
        if binary:
            return plaintext
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError(
                f"the secret of {service}/{user} in table '{self.config.tablename}' "
                "is not UTF-8 text"
            ) from None

    def _forget(self, service: str, user: str) -> None:
        # Every cached version of the row: a save changes "latest", a delete removes all.
        if self._cache is not None:
            row = (self.config.tablename, service, user)
            self._cache.invalidate(lambda key: key[:3] == row)  # type: ignore[index]

    # -- one secret ----------------------------------------------------------------------------

    def save(
        self, service: str, user: str, secret: Secret, *, expect_version: int | None = None
    ) -> int:
        """Save secret as a new version of service/user and return its version number.

        With expect_version, save only if the current version is that number (0: only if the
        secret does not exist yet); otherwise raise VersionConflictError and write nothing.
        A str is stored as text and bytes as bytes, and each reads back as what it was.
        """
        service, user = check_row(service, user)
        plaintext, binary = secret_bytes(secret, service, user)
        if expect_version is not None:
            check_version(expect_version, minimum=0)
        key = self._require_key(service)
        try:
            return self._aws(
                f"cannot save {service}/{user} with key {key} in",
                lambda: self._store.save(service, user, plaintext, key, expect_version, binary),
            )
        finally:
            self._forget(service, user)

    def read(self, service: str, user: str, version: int | None = None) -> Secret:
        """Return the secret of service/user (latest, or the given version): str, or bytes
        when it was saved as bytes."""
        service, user = check_row(service, user)
        if version is not None:
            check_version(version)

        def fetch() -> Secret:
            plaintext, binary = self._aws(
                f"cannot read {service}/{user} from",
                lambda: self._store.plaintext(service, user, version),
            )
            return self._value(service, user, plaintext, binary)

        if self._cache is None:
            return fetch()
        return self._cache.get((self.config.tablename, service, user, version), fetch)

    def history(self, service: str, user: str) -> builtins.list[VersionInfo]:
        """Return the retained versions of service/user, newest first; decrypts nothing."""
        service, user = check_row(service, user)
        item = self._aws(
            f"cannot read the history of {service}/{user} from",
            lambda: self._store.load(service, user),
        )
        return [VersionInfo(version=v.version, saved_at=v.saved_at) for v in item.versions]

    def rollback(self, service: str, user: str, version: int) -> int:
        """Save version's value of service/user as a new version and return its number."""
        service, user = check_row(service, user)
        check_version(version)
        key = self._require_key(service)

        def roll() -> int:
            plaintext, binary = self._store.plaintext(service, user, version)
            return self._store.save(service, user, plaintext, key, None, binary)

        try:
            return self._aws(f"cannot roll back {service}/{user} to version {version} in", roll)
        finally:
            self._forget(service, user)

    def delete(self, service: str, user: str) -> None:
        """Delete the secret of service/user with every version."""
        service, user = check_row(service, user)
        try:
            self._aws(
                f"cannot delete {service}/{user} from", lambda: self._store.delete(service, user)
            )
        finally:
            self._forget(service, user)

    # -- table ---------------------------------------------------------------------------------

    def list(self, service: str | None = None) -> Iterator[Entry]:
        """Yield every stored secret's name, or one service's, sorted; never reads values."""
        where = f" of service {service}" if service else ""
        keys = self._aws(f"cannot list secrets{where} in", lambda: self._store.keys(service))
        return (Entry(service=s, user=u, legacy=legacy) for s, u, legacy in keys)

    def setup(self, create_key: bool = False) -> SetupResult:
        """Create the table if missing and, with create_key, the KMS key behind the alias."""
        key_created = False
        if create_key:
            alias = self.config.keyalias
            if not alias or not alias.startswith("alias/"):
                raise CloudChainConfigError(
                    f"cannot create a key: the key alias {alias!r} must be set and start with "
                    "alias/ (keyalias under [IAMKMS], CLOUDCHAIN_KEY_ALIAS or --key-alias)"
                )
            key_created = self._aws(
                f"cannot create KMS key {alias} for", lambda: self._store.ensure_key(alias)
            )
        table_created = self._aws("cannot create", self._store.ensure_table)
        return SetupResult(table_created=table_created, key_created=key_created)
