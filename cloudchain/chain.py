"""The CloudChain class: the public API over one table and key.

It checks input before any AWS call, translates AWS errors (calls.AwsCalls) and keeps the
optional cache. Storage is store.SecretStore; operations over a whole service or table are
service_ops.ServiceOperations, which CloudChain composes and exposes.
"""

from __future__ import annotations

import builtins
import os
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

from .cache import SecretCache
from .clients import Clients
from .config import DEFAULT_TABLE, Config
from .config_sources import load_config
from .errors import CloudChainConfigError, SecretNotFoundError
from .regions import Regions
from .results import (
    Deleted,
    Entry,
    ImportResult,
    ReencryptResult,
    Secret,
    SetupResult,
    VersionDiff,
    Versioned,
    VersionInfo,
    secret_value,
)
from .store import SecretStore
from .validation import (
    check_comment,
    check_new_row,
    check_row,
    check_tag_key,
    check_tags,
    check_version,
    check_whole,
    secret_bytes,
)

if TYPE_CHECKING:
    import boto3

    from .identity import CallerIdentity
    from .service_ops import ServiceOperations
    from .writer import RowWriter, Why


_DEFAULTS = Config()
T = TypeVar("T")


def _why(action: str, comment: str | None) -> Why:
    """How and why a write makes its version, its comment checked before any AWS call."""
    from .writer import Why  # the write side, imported only by a process that writes

    return Why(action, check_comment(comment))


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
        cache_max_entries: int = _DEFAULTS.cache_max_entries,
        allow_legacy: bool = _DEFAULTS.allow_legacy,
        recovery_days: int = _DEFAULTS.recovery_days,
        replica_regions: Sequence[str] = (),
        failover_cooldown: float = _DEFAULTS.failover_cooldown,
        region_endpoints: Mapping[str, str] | None = None,
        kms_region_endpoints: Mapping[str, str] | None = None,
        session: boto3.Session | None = None,
    ) -> None:
        self.config = c = Config(
            region_name=region_name,
            endpoint_url=endpoint_url,
            kms_endpoint_url=kms_endpoint_url,
            tablename=tablename,
            keyalias=keyalias,
            profile_name=profile_name,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            retry_mode=retry_mode,
            history_size=history_size,
            max_workers=max_workers,
            cache_ttl=cache_ttl,
            stale_if_error=stale_if_error,
            cache_max_entries=cache_max_entries,
            allow_legacy=allow_legacy,
            recovery_days=recovery_days,
            replica_regions=tuple(replica_regions),
            failover_cooldown=failover_cooldown,
            region_endpoints=dict(region_endpoints or {}),
            kms_region_endpoints=dict(kms_region_endpoints or {}),
        )
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
    def _writer(self) -> RowWriter:
        def build() -> RowWriter:
            from . import writer

            c = self.config
            return writer.RowWriter(
                self._store,
                saved_by=self._identity.arn,
                history_size=c.history_size,
                recovery_days=c.recovery_days,
                # A write that keeps losing races retries for as long as a reply may take.
                conflict_deadline=c.read_timeout,
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
    def failovers(self) -> int:
        """How many reads this instance served from a replica region."""
        return self._regions.failovers

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

    def _writing(self, doing: str, service: str, user: str, call: Callable[[], T]) -> T:
        """Run a write: who is writing is asked of STS meanwhile, errors are translated, and
        the row is dropped from the cache whatever happens."""
        self._identity.prefetch()
        try:
            return self._regions.write(lambda: self._aws(doing, call))
        finally:
            self._forget(service, user)

    # -- one secret ----------------------------------------------------------------------------

    def save(
        self,
        service: str,
        user: str,
        secret: Secret,
        *,
        expect_version: int | None = None,
        history_size: int | None = None,
        comment: str | None = None,
        tags: Mapping[str, str] | None = None,
        untag: Collection[str] = (),
    ) -> int:
        """Save secret as a new version of service/user and return its version number.

        With expect_version, save only if the current version is that number (0: only if the
        secret does not exist yet); otherwise raise VersionConflictError and write nothing.
        A str is stored as text and bytes as bytes, and each reads back as what it was.
        history_size changes how many versions this secret keeps from now on; without it,
        the secret keeps what it recorded (a new one: the configured history_size). comment
        says why, in the version; tags are set, and untag removed, on the secret.
        """
        service, user = check_new_row(service, user)
        plaintext, binary = secret_bytes(secret, service, user)
        if expect_version is not None:
            check_version(expect_version, minimum=0)
        if history_size is not None:
            check_whole(history_size, "history_size")
        why = _why("save", comment)
        tags, untag = check_tags(tags), [check_tag_key(k) for k in untag]
        key = self._require_key(service)
        return self._writing(
            f"cannot save {service}/{user} with key {key} in",
            service,
            user,
            lambda: self._writer.save(
                service, user, plaintext, key, expect_version=expect_version, binary=binary,
                history_size=history_size, why=why, tags=tags, untag=untag,
            ),
        )  # fmt: skip

    def read(self, service: str, user: str, version: int | None = None) -> Secret:
        """Return the secret of service/user (latest, or the given version): str, or bytes
        when it was saved as bytes. A deleted secret reads as absent, every version of it."""
        return self.read_versioned(service, user, version).value

    def read_versioned(self, service: str, user: str, version: int | None = None) -> Versioned:
        """Return the secret of service/user, as read(), with the number of its version."""
        service, user = check_row(service, user)
        if version is not None:
            check_version(version)
        where = f"{service}/{user}" + (f" version {version}" if version else "")

        def fetch() -> Versioned:
            plaintext, binary, number = self._regions.read(
                f"cannot read {where} from", lambda store: store.plaintext(service, user, version)
            )
            value = secret_value(plaintext, binary, f"{where} in table '{self.config.tablename}'")
            return Versioned(value, number)

        if self._cache is None:
            return fetch()
        found: Versioned = self._cache.get((self.config.tablename, service, user, version), fetch)
        return found

    def history(self, service: str, user: str) -> builtins.list[VersionInfo]:
        """Return the retained versions of service/user, newest first, with who made each,
        when, how and why; decrypts nothing."""
        service, user = check_row(service, user)
        item = self._regions.read(
            f"cannot read the history of {service}/{user} from",
            lambda store: store.load(service, user),
        )
        return [
            VersionInfo(v.version, v.saved_at, v.saved_by, v.action, v.comment)
            for v in item.versions
        ]

    def rollback(self, service: str, user: str, version: int, *, comment: str | None = None) -> int:
        """Save version's value of service/user as a new version and return its number."""
        service, user = check_row(service, user)
        check_version(version)
        why = _why("rollback", comment)
        key = self._require_key(service)

        def roll() -> int:
            plaintext, binary, _ = self._store.plaintext(service, user, version)
            return self._writer.save(service, user, plaintext, key, binary=binary, why=why)

        return self._writing(
            f"cannot roll back {service}/{user} to version {version} in", service, user, roll
        )

    def delete(self, service: str, user: str, *, comment: str | None = None) -> Deleted:
        """Delete the secret of service/user, recoverably for recovery_days: reads treat it
        as absent, undelete() restores it, purge() destroys it at once."""
        service, user = check_row(service, user)
        why = _why("delete", comment)
        return self._writing(
            f"cannot delete {service}/{user} from",
            service,
            user,
            lambda: self._writer.delete(service, user, why),
        )

    def undelete(self, service: str, user: str, *, comment: str | None = None) -> int:
        """Restore a deleted secret's last value as a new version and return its number."""
        service, user = check_row(service, user)
        why = _why("undelete", comment)
        key = self._require_key(service)

        def restore() -> int:
            item = self._store.load(service, user)
            last = next((v for v in item.history if not v.deleted), None)
            if not item.deleted or last is None:
                raise SecretNotFoundError(f"no deleted secret {service}/{user} to restore")
            plaintext, binary = self._store.decrypt(service, user, last)
            return self._writer.save(
                service, user, plaintext, key, binary=binary, why=why, only_if_deleted=True
            )

        return self._writing(f"cannot undelete {service}/{user} in", service, user, restore)

    def purge(self, service: str, user: str, *, force: bool = False) -> None:
        """Delete the secret of service/user for good, every version, at once: only a deleted
        one, unless force."""
        service, user = check_row(service, user)
        self._writing(
            f"cannot purge {service}/{user} from",
            service,
            user,
            lambda: self._writer.purge(service, user, force),
        )

    def tags(self, service: str, user: str) -> dict[str, str]:
        """Return the tags of service/user."""
        service, user = check_row(service, user)
        return self._regions.read(
            f"cannot read the tags of {service}/{user} from",
            lambda store: store.load_secret(service, user).tags,
        )

    def set_tags(
        self,
        service: str,
        user: str,
        tags: Mapping[str, str] | None = None,
        untag: Collection[str] = (),
    ) -> dict[str, str]:
        """Set tags on, and remove untag from, service/user without a new version; return
        its tags."""
        service, user = check_row(service, user)
        tags, untag = check_tags(tags), [check_tag_key(k) for k in untag]
        return self._writing(
            f"cannot tag {service}/{user} in",
            service,
            user,
            lambda: self._writer.set_tags(service, user, tags, untag),
        )

    def diff(
        self,
        service: str,
        user: str,
        from_version: int | None = None,
        to_version: int | None = None,
    ) -> VersionDiff:
        """Compare two versions without returning either value: by default the previous
        version against the current one; with from_version alone, that one against the
        current one."""
        service, user = check_row(service, user)
        for version in (from_version, to_version):
            if version is not None:
                check_version(version)

        def compare(store: SecretStore) -> VersionDiff:
            item = store.load_secret(service, user)
            newer = store.version_of(item, to_version)
            if from_version is None:
                older = next((v for v in item.versions if v.version < newer.version
                              and not v.deleted), None)  # fmt: skip
                if older is None:
                    raise SecretNotFoundError(
                        f"{service}/{user} in table '{self.config.tablename}' retains no "
                        f"version before {newer.version}"
                    )
            else:
                older = store.version_of(item, from_version)
            old, old_binary = store.decrypt(service, user, older)
            new, new_binary = store.decrypt(service, user, newer)
            binary = old_binary or new_binary
            from .diff import compare

            return compare(older.version, old, newer.version, new, binary)

        return self._regions.read(f"cannot compare versions of {service}/{user} in", compare)

    # -- many secrets --------------------------------------------------------------------------

    def list(
        self,
        service: str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        deleted: bool = False,
    ) -> Iterator[Entry]:
        """Yield every secret's name and tags, or one service's, sorted; never reads values
        and never calls KMS. tags: only secrets with all of them. deleted: only deleted
        secrets (with when, by whom, and until when they can be restored), instead of none."""
        return self._service.list(service, tags=tags, deleted=deleted)

    def export(self, service: str, *, tags: Mapping[str, str] | None = None) -> dict[str, Secret]:
        """Return every current secret of service (with all of tags, if given), keyed by
        user, sorted.

        One paginated Query and parallel KMS decrypts; if any secret fails, raise an error
        naming it and return nothing.
        """
        return {user: v.value for user, v in self.export_versioned(service, tags=tags).items()}

    def export_versioned(
        self, service: str, *, tags: Mapping[str, str] | None = None
    ) -> dict[str, Versioned]:
        """Return what export() does, with the version number of each secret."""
        return self._service.export(service, tags=tags)

    def import_secrets(
        self,
        service: str,
        mapping: Mapping[str, Secret],
        dry_run: bool = False,
        *,
        progress: Callable[[str, str], None] | None = None,
        comment: str | None = None,
    ) -> ImportResult:
        """Save each {user: secret} whose value differs from the current one, in parallel.

        Every entry is checked before the first write: one bad entry writes nothing. An
        entry equal to the current value is left alone, so it gets no new version.
        progress(user, outcome) is called as each entry is settled. If a write fails, the
        writes not yet started are cancelled and IncompleteImportError says which landed.
        Each new version records the action "import" and comment.
        """
        self._identity.prefetch()
        return self._regions.write(
            lambda: self._service.import_secrets(
                service, mapping, dry_run, progress=progress, comment=comment
            )
        )

    def reencrypt(
        self,
        service: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        *,
        on_row: Callable[[str, str, str], None] | None = None,
    ) -> ReencryptResult:
        """Re-encrypt every retained version of every secret (or service's) under the
        configured key alias, and bind every version to its row, version and type.

        A row that fails is counted and named, and the others go on. progress(done, total)
        follows the count; on_row(service, user, outcome) names each row as it is settled.
        """
        return self._regions.write(
            lambda: self._service.reencrypt(service, progress, on_row=on_row)
        )

    def policy(
        self, service: str, access: str, *, account: str | None = None, key_arn: str | None = None
    ) -> dict[str, Any]:
        """Return an IAM policy letting a role read (or read and write) only service's secrets."""
        return self._service.policy(service, access, account=account, key_arn=key_arn)

    def setup(self, create_key: bool = False) -> SetupResult:
        """Create the table if missing, with TTL on ExpiresAt (deleted secrets expire), and,
        with create_key, the KMS key behind the alias. With replica_regions, the table becomes
        a global table replicated there (with streams), and the key a multi-Region key
        replicated there under the same alias. What exists is left alone."""
        from . import provision

        alias = self.config.keyalias
        if create_key and (not alias or not alias.startswith("alias/")):
            raise CloudChainConfigError(
                f"cannot create a key: the key alias {alias!r} must be set and start with "
                "alias/ (keyalias under [IAMKMS], CLOUDCHAIN_KEY_ALIAS or --key-alias)"
            )
        home = self._clients.region
        replicas = {r: self._clients.replica(r) for r in self.config.replica_regions if r != home}
        return self._aws(
            "cannot set up",
            lambda: provision.setup(
                self._clients, replicas, self.config.tablename, alias if create_key else None
            ),
        )
