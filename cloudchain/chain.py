"""The CloudChain class: the public API over one table and key.

It checks input before any AWS call, translates AWS errors (errors.aws_errors), keeps the
optional cache, and runs whole-service operations in parallel. Storage is store.SecretStore.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar, Union

from .cache import SecretCache
from .clients import Clients
from .config import DEFAULT_TABLE, RETRY_MODES, Config, load_config
from .errors import (
    CloudChainConfigError,
    CloudChainError,
    IntegrityError,
    SecretNotFoundError,
    ThrottledError,
    aws_errors,
)
from .results import Entry, ImportResult, ReencryptResult, SetupResult, VersionInfo
from .store import SecretStore
from .validation import (
    MAX_SERVICE_BYTES,
    check_choice,
    check_name,
    check_row,
    check_seconds,
    check_version,
    check_whole,
    secret_bytes,
)

if TYPE_CHECKING:
    import boto3

    from .table import StoredItem

_DEFAULTS = Config()
T = TypeVar("T")
# Rounds of botocore's own attempts a still-throttled call gets (see CloudChain._aws).
THROTTLE_ROUNDS = 3
THROTTLE_BASE = 0.5
# A secret value: text, or bytes for a secret saved as bytes.
Secret = Union[str, bytes]


class CloudChain:
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
            existed = self._aws(
                f"cannot delete {service}/{user} from",
                lambda: self._store.delete(service, user),
            )
        finally:
            self._forget(service, user)
        if not existed:
            raise SecretNotFoundError(
                f"no secret for {service}/{user} in table '{self.config.tablename}'"
            )

    # -- whole service -------------------------------------------------------------------------

    def export(self, service: str) -> dict[str, Secret]:
        """Return every current secret of service, keyed by user, sorted.

        One paginated Query and parallel KMS decrypts; if any secret fails, raise an error
        naming it and return nothing.
        """
        from .parallel import parallel_map

        service = check_name(service, "service", MAX_SERVICE_BYTES)
        items = self._service_items(service)
        plaintexts = parallel_map(self._current_plaintext, items, self.config.max_workers)
        return {
            i.user: self._value(service, i.user, p, i.current.binary)
            for i, p in zip(items, plaintexts)
        }

    def import_secrets(
        self, service: str, mapping: Mapping[str, Secret], dry_run: bool = False
    ) -> ImportResult:
        """Save each {user: secret} whose value differs from the current one, in parallel.

        Every entry is checked before the first write: one bad entry writes nothing. An
        entry equal to the current value is left alone, so it gets no new version.
        """
        from .parallel import parallel_map

        service = check_name(service, "service", MAX_SERVICE_BYTES)
        entries = {
            check_row(service, user)[1]: secret_bytes(value, service, user)
            for user, value in mapping.items()
        }
        plaintexts = {user: data for user, (data, _) in entries.items()}
        key = None if dry_run else self._require_key(service)
        items = [i for i in self._service_items(service) if i.user in plaintexts]
        current = parallel_map(self._current_plaintext, items, self.config.max_workers)
        existing = {item.user: value for item, value in zip(items, current)}
        actions = {
            user: "create" if user not in existing
            else "unchanged" if existing[user] == plaintexts[user]
            else "change"
            for user in sorted(plaintexts)
        }  # fmt: skip
        if key is not None:

            def write(user: str) -> int:
                try:
                    return self._aws(
                        f"cannot save {service}/{user} in",
                        lambda: self._store.save(
                            service, user, entries[user][0], key, None, entries[user][1]
                        ),
                    )
                finally:
                    self._forget(service, user)

            writes = [user for user, action in actions.items() if action != "unchanged"]
            parallel_map(write, writes, self.config.max_workers)
        return ImportResult(actions=actions)

    def _service_items(self, service: str) -> builtins.list[StoredItem]:
        return self._aws(
            f"cannot query service {service} in", lambda: self._store.service_items(service)
        )

    def _current_plaintext(self, item: StoredItem) -> bytes:
        return self._aws(
            f"cannot decrypt {item.service}/{item.user} in",
            lambda: self._store.decrypt(item.service, item.user, item.current),
        )

    # -- table ---------------------------------------------------------------------------------

    def list(self, service: str | None = None) -> Iterator[Entry]:
        """Yield every stored secret's name, or one service's, sorted; never reads values."""
        where = f" of service {service}" if service else ""
        keys = self._aws(f"cannot list secrets{where} in", lambda: self._store.keys(service))
        return (Entry(service=s, user=u, legacy=legacy) for s, u, legacy in keys)

    def reencrypt(
        self, service: str | None = None, progress: Callable[[int, int], None] | None = None
    ) -> ReencryptResult:
        """Re-encrypt every retained version of every secret (or service's) under the
        configured key alias, and move legacy rows to the row-bound context.

        KMS ReEncrypt moves direct ciphertexts, and envelope data keys are re-wrapped, so no
        plaintext leaves KMS. Each row is written with a condition, so a concurrent save is
        never overwritten. Idempotent: rows already under the key count as current. A row
        that fails is counted and named, and the others go on.
        """
        from .parallel import parallel_map

        if service is not None:
            service = check_name(service, "service", MAX_SERVICE_BYTES)
        alias = self._require_key(service or "the table")
        key_arn = self._aws(f"cannot resolve key {alias} for", lambda: self._store.key_arn(alias))
        rows = self._aws("cannot list the rows of", lambda: self._store.all_keys(service))
        done = iter(range(1, len(rows) + 1))

        def one(row: tuple[str, str]) -> str:
            outcome = "failed"
            try:
                moved = self._aws(
                    f"cannot re-encrypt {row[0]}/{row[1]} in",
                    lambda: self._store.reencrypt(row[0], row[1], alias, key_arn),
                )
                outcome = "reencrypted" if moved else "current"
            except CloudChainError:
                pass
            finally:
                self._forget(*row)
                if progress is not None:
                    progress(next(done), len(rows))
            return outcome

        outcomes = parallel_map(one, rows, self.config.max_workers)
        return ReencryptResult(
            reencrypted=outcomes.count("reencrypted"),
            current=outcomes.count("current"),
            failed=tuple(f"{s}/{u}" for (s, u), o in zip(rows, outcomes) if o == "failed"),
        )

    def policy(
        self, service: str, access: str, *, account: str | None = None, key_arn: str | None = None
    ) -> dict[str, Any]:
        """Return an IAM policy letting a role read (or read and write) only service's secrets.

        The account comes from STS GetCallerIdentity and the key ARN from KMS DescribeKey on
        the key alias, unless given; with both given, no AWS call is made.
        """
        from .policy import ACCESS, build_policy

        service = check_name(service, "service", MAX_SERVICE_BYTES)
        access = check_choice(access, "access", ACCESS)
        if key_arn is None:
            alias = self._require_key(service)
            key_arn = self._aws(
                f"cannot resolve key {alias} for", lambda: self._store.key_arn(alias)
            )
        if account is None:
            sts = self._clients.get("sts")
            account = self._aws(
                "cannot read the account (STS GetCallerIdentity) for",
                lambda: str(sts.get_caller_identity()["Account"]),
            )
        return build_policy(
            service,
            access,
            region=self._clients.region,
            account=account,
            table=self.config.tablename,
            key_arn=key_arn,
        )

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
