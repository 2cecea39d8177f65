"""The CloudChain class: the public API over one table and key.

It checks input before any AWS call, translates AWS errors (calls.AwsCalls) and keeps the
optional cache. This module builds it and holds the reads of one secret; its parts are
chain_parts.py's, the writes of one secret chain_writes.py's, and the operations over a whole
service or table (service_ops.ServiceOperations, provision.py) chain_table.py's.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any, TypeVar

from .chain_staging import StagedWrites
from .chain_table import TableOperations
from .config import DEFAULT_TABLE, Config
from .config_sources import load_config
from .errors import ValidationError
from .results import (
    Secret,
    VersionDiff,
    Versioned,
    VersionInfo,
    secret_value,
)
from .store import stage_of
from .validation import (
    check_row,
    check_stage,
    check_version,
)

if TYPE_CHECKING:
    import boto3


_DEFAULTS = Config()
T = TypeVar("T")


class CloudChain(StagedWrites, TableOperations):
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
        rotate_every: float | None = None,
        session: boto3.Session | None = None,
    ) -> None:
        config = Config(
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
            rotate_every=rotate_every,  # type: ignore[arg-type]  # Config makes it whole
        )
        super().__init__(config, session)

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

    # -- one secret ----------------------------------------------------------------------------

    def read(
        self, service: str, user: str, version: int | None = None, *, stage: str = "current"
    ) -> Secret:
        """Return the secret of service/user (latest, or the given version): str, or bytes
        when it was saved as bytes. A deleted secret reads as absent, every version of it.
        stage: "pending" (staged, not yet promoted) or "previous" (current before the last
        save or promote) reads that version instead of the current one."""
        return self.read_versioned(service, user, version, stage=stage).value

    def read_versioned(
        self, service: str, user: str, version: int | None = None, *, stage: str = "current"
    ) -> Versioned:
        """Return the secret of service/user, as read(), with the number of its version."""
        service, user = check_row(service, user)
        if version is not None:
            check_version(version)
        if check_stage(stage) != "current" and version is not None:
            raise ValidationError("give a version or a stage, not both")
        where = f"{service}/{user}" + (f" version {version}" if version else "")
        where += f" ({stage})" if stage != "current" else ""

        def fetch() -> Versioned:
            plaintext, binary, number = self._regions.read(
                f"cannot read {where} from",
                lambda store: store.plaintext(service, user, version, stage),
            )
            value = secret_value(plaintext, binary, f"{where} in table '{self.config.tablename}'")
            return Versioned(value, number)

        if self._cache is None:
            return fetch()
        key: tuple[str | int | None, ...] = (self.config.tablename, service, user, version)
        found: Versioned = self._cache.get(key if stage == "current" else (*key, stage), fetch)
        return found

    def history(self, service: str, user: str) -> builtins.list[VersionInfo]:
        """Return the retained versions of service/user, newest first, with who made each,
        when, how and why; decrypts nothing."""
        service, user = check_row(service, user)
        item = self._regions.read(
            f"cannot read the history of {service}/{user} from",
            lambda store: store.load(service, user),
        )
        from .schedule import due_at, iso

        due = due_at(item.current.saved_at, item.rotate_every, item.current.not_after)
        stages = {id(stage_of(item, name)): name for name in ("previous", "current", "pending")}
        versions = [
            VersionInfo(v.version, v.saved_at, v.saved_by, v.action, v.comment, v.not_after,
                        stage=stages.get(id(v)))
            for v in item.all_versions
        ]  # fmt: skip
        if item.deleted:
            return versions
        current = 0 if item.pending is None else 1  # the pending version comes first
        versions[current] = replace(
            versions[current], rotate_every=item.rotate_every, due_at=iso(due[0]) if due else None
        )
        return versions

    def schedule(self, service: str, user: str) -> tuple[int | None, str | None]:
        """Return the rotation period (seconds) of service/user and its current value's hard
        expiry (ISO 8601 UTC); None where there is none. Decrypts nothing."""
        service, user = check_row(service, user)
        item = self._regions.read(
            f"cannot read the schedule of {service}/{user} from",
            lambda store: store.load_secret(service, user),
        )
        return item.rotate_every, item.current.not_after

    def tags(self, service: str, user: str) -> dict[str, str]:
        """Return the tags of service/user."""
        service, user = check_row(service, user)
        return self._regions.read(
            f"cannot read the tags of {service}/{user} from",
            lambda store: store.load_secret(service, user).tags,
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

        from .diff import diff_versions

        return self._regions.read(
            f"cannot compare versions of {service}/{user} in",
            lambda store: diff_versions(store, service, user, from_version, to_version),
        )
