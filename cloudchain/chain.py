"""The CloudChain class: one configuration and its clients, composing crypto and table."""

from __future__ import annotations

import builtins
import logging
import os
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import crypto, table
from .clients import Clients
from .config import DEFAULT_TABLE, Config, load_config
from .errors import (
    CloudChainConfigError,
    CloudChainError,
    IntegrityError,
    SecretNotFoundError,
    VersionConflictError,
    aws_errors,
)
from .parallel import parallel_map
from .results import Entry, ImportResult, SetupResult, VersionInfo
from .validation import (
    MAX_SERVICE_BYTES,
    check_name,
    check_row,
    check_version,
    check_whole,
    secret_bytes,
)

if TYPE_CHECKING:
    import boto3

_DEFAULTS = Config()
log = logging.getLogger(__name__)

# Saves that lose a race with another save retry with full jitter, this many times at most.
SAVE_ATTEMPTS = 10
RETRY_BASE = 0.05
RETRY_CAP = 1.0


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
        history_size: int = _DEFAULTS.history_size,
        max_workers: int = _DEFAULTS.max_workers,
        session: boto3.Session | None = None,
    ) -> None:
        self.config = Config(
            region_name=region_name or None,
            endpoint_url=endpoint_url or None,
            kms_endpoint_url=kms_endpoint_url or None,
            tablename=tablename or DEFAULT_TABLE,
            keyalias=keyalias or None,
            profile_name=profile_name or None,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            history_size=check_whole(history_size, "history_size"),
            max_workers=check_whole(max_workers, "max_workers"),
        )
        self._clients = Clients(self.config, session)

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
        return self._clients.get("dynamodb")

    @property
    def _kms(self) -> Any:
        return self._clients.get("kms")

    def _errors(self, doing: str) -> Any:
        return aws_errors(doing, self.config.endpoint_url)

    def _require_key(self, service: str, user: str) -> str:
        if not self.config.keyalias:
            raise CloudChainConfigError(
                f"cannot save {service}/{user}: no KMS key alias is configured; set keyalias "
                "under [IAMKMS] in ~/.cchainrc, CLOUDCHAIN_KEY_ALIAS, --key-alias, "
                "or CloudChain(keyalias=...)"
            )
        return self.config.keyalias

    # -- operations ----------------------------------------------------------------------------

    def save(
        self, service: str, user: str, secret: str, *, expect_version: int | None = None
    ) -> int:
        """Save secret as a new version of service/user and return its version number.

        With expect_version, save only if the current version is that number (0: only if the
        secret does not exist yet); otherwise raise VersionConflictError and write nothing.
        """
        service, user = check_row(service, user)
        plaintext = secret_bytes(secret, service, user)
        if expect_version is not None:
            check_version(expect_version, minimum=0)
        key = self._require_key(service, user)
        name = self.config.tablename
        with self._errors(f"cannot save {service}/{user} in table '{name}' with key {key}"):
            return self._save_plaintext(service, user, plaintext, key, expect_version)

    def _save_plaintext(
        self, service: str, user: str, plaintext: bytes, key: str, expect_version: int | None
    ) -> int:
        name = self.config.tablename
        # The version is bound into the ciphertext, so encrypt again only when it changes.
        encrypted: dict[int, bytes] = {}
        for attempt in range(SAVE_ATTEMPTS):
            item = table.get_item(self._dynamodb, name, service, user)
            current = item.current.version if item else 0
            if expect_version is not None and current != expect_version:
                raise VersionConflictError(
                    f"{service}/{user} in table '{name}' is at version {current}, "
                    f"not {expect_version}; nothing was saved",
                    current_version=current,
                )
            version = current + 1
            if version not in encrypted:
                context = crypto.context_for(crypto.VERSIONED_CONTEXT, service, user, version)
                encrypted[version] = crypto.encrypt(self._kms, key, plaintext, context)
            new = table.StoredVersion(
                version, encrypted[version], _utc_now(), crypto.VERSIONED_CONTEXT
            )
            kept = list(item.versions[: self.config.history_size - 1]) if item else []
            try:
                table.put_item(
                    self._dynamodb, name, table.build_item(service, user, new, kept), item
                )
            except table.ConditionFailed:
                # Another save won the race: read again and retry with the next version number.
                log.debug("save of %s/%s lost a race at version %d", service, user, version)
                time.sleep(random.uniform(0, min(RETRY_CAP, RETRY_BASE * 2**attempt)))
                continue
            log.debug("saved %s/%s version %d in table %s", service, user, version, name)
            return version
        raise CloudChainError(
            f"cannot save {service}/{user} in table '{name}': {SAVE_ATTEMPTS} attempts "
            "lost races with concurrent saves"
        )

    def _load(self, service: str, user: str) -> table.StoredItem:
        name = self.config.tablename
        item = table.get_item(self._dynamodb, name, service, user)
        if item is None:
            raise SecretNotFoundError(f"no secret for {service}/{user} in table '{name}'")
        return item

    def _decrypt(self, service: str, user: str, stored: table.StoredVersion) -> bytes:
        context = crypto.context_for(stored.context_keys, service, user, stored.version)
        return crypto.decrypt(self._kms, stored.ciphertext, context)

    def _plaintext(self, service: str, user: str, version: int | None) -> bytes:
        item = self._load(service, user)
        stored = item.current if version is None else item.find(version)
        if stored is None:
            retained = ", ".join(str(v.version) for v in item.versions)
            raise SecretNotFoundError(
                f"version {version} of {service}/{user} in table '{self.config.tablename}' "
                f"does not exist or was pruned (retained: {retained})"
            )
        return self._decrypt(service, user, stored)

    def read(self, service: str, user: str, version: int | None = None) -> str:
        """Return the secret of service/user: the latest version, or the given one."""
        service, user = check_row(service, user)
        if version is not None:
            check_version(version)
        name = self.config.tablename
        with self._errors(f"cannot read {service}/{user} from table '{name}'"):
            return self._text(service, user, self._plaintext(service, user, version))

    def _text(self, service: str, user: str, plaintext: bytes) -> str:
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError(
                f"the secret of {service}/{user} in table '{self.config.tablename}' "
                "is not UTF-8 text"
            ) from None

    def history(self, service: str, user: str) -> builtins.list[VersionInfo]:
        """Return the retained versions of service/user, newest first; decrypts nothing."""
        service, user = check_row(service, user)
        name = self.config.tablename
        with self._errors(f"cannot read the history of {service}/{user} from table '{name}'"):
            item = self._load(service, user)
        return [VersionInfo(version=v.version, saved_at=v.saved_at) for v in item.versions]

    def rollback(self, service: str, user: str, version: int) -> int:
        """Save version's value of service/user as a new version and return its number."""
        service, user = check_row(service, user)
        check_version(version)
        key = self._require_key(service, user)
        name = self.config.tablename
        with self._errors(
            f"cannot roll back {service}/{user} in table '{name}' to version {version}"
        ):
            plaintext = self._plaintext(service, user, version)
            return self._save_plaintext(service, user, plaintext, key, None)

    def delete(self, service: str, user: str) -> None:
        """Delete the secret of service/user with every version."""
        service, user = check_row(service, user)
        name = self.config.tablename
        with self._errors(f"cannot delete {service}/{user} from table '{name}'"):
            existed = table.delete_item(self._dynamodb, name, service, user)
        if not existed:
            raise SecretNotFoundError(f"no secret for {service}/{user} in table '{name}'")

    def export(self, service: str) -> dict[str, str]:
        """Return every current secret of service, keyed by user, sorted.

        One paginated Query and parallel KMS decrypts; if any secret fails, raise an error
        naming it and return nothing.
        """
        service = check_name(service, "service", MAX_SERVICE_BYTES)
        items = self._service_items(service)
        values = parallel_map(self._current_text, items, self.config.max_workers)
        return {item.user: value for item, value in zip(items, values)}

    def import_secrets(
        self, service: str, mapping: Mapping[str, str], dry_run: bool = False
    ) -> ImportResult:
        """Save each {user: secret} whose value differs from the current one, in parallel.

        Every entry is checked before the first write: one bad entry writes nothing. An
        entry equal to the current value is left alone, so it gets no new version.
        """
        service = check_name(service, "service", MAX_SERVICE_BYTES)
        plaintexts = {
            check_row(service, user)[1]: secret_bytes(value, service, user)
            for user, value in mapping.items()
        }
        key = None if dry_run else self._require_key(service, "*")
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
            writes = [user for user, action in actions.items() if action != "unchanged"]
            parallel_map(
                lambda user: self._save_entry(service, user, plaintexts[user], key),
                writes,
                self.config.max_workers,
            )
        return ImportResult(actions=actions)

    def _service_items(self, service: str) -> builtins.list[table.StoredItem]:
        name = self.config.tablename
        with self._errors(f"cannot query service {service} in table '{name}'"):
            return sorted(table.query_items(self._dynamodb, name, service), key=lambda i: i.user)

    def _current_plaintext(self, item: table.StoredItem) -> bytes:
        where = f"{item.service}/{item.user} in table '{self.config.tablename}'"
        with self._errors(f"cannot decrypt {where}"):
            return self._decrypt(item.service, item.user, item.current)

    def _current_text(self, item: table.StoredItem) -> str:
        return self._text(item.service, item.user, self._current_plaintext(item))

    def _save_entry(self, service: str, user: str, plaintext: bytes, key: str) -> int:
        with self._errors(f"cannot save {service}/{user} in table '{self.config.tablename}'"):
            return self._save_plaintext(service, user, plaintext, key, None)

    def list(self, service: str | None = None) -> Iterator[Entry]:
        """Yield every stored secret's name, or one service's, sorted; never reads values."""
        name = self.config.tablename
        where = f" of service {service}" if service else ""
        with self._errors(f"cannot list secrets{where} in table '{name}'"):
            keys: builtins.list[tuple[str, str]] = sorted(
                table.iter_keys(self._dynamodb, name, service)
            )
        return (Entry(service=s, user=u) for s, u in keys)

    def setup(self, create_key: bool = False) -> SetupResult:
        """Create the table if missing and, with create_key, the KMS key behind the alias."""
        name = self.config.tablename
        key_created = False
        if create_key:
            alias = self.config.keyalias
            if not alias:
                raise CloudChainConfigError(
                    "cannot create a key: no KMS key alias is configured (set keyalias or --key-alias)"
                )
            if not alias.startswith("alias/"):
                raise CloudChainConfigError(
                    f"cannot create key alias {alias}: it must start with alias/"
                )
            with self._errors(f"cannot create KMS key {alias}"):
                if not crypto.key_exists(self._kms, alias):
                    crypto.create_key_with_alias(self._kms, alias)
                    key_created = True
        with self._errors(f"cannot create table '{name}'"):
            table_created = table.create_table(self._dynamodb, name)
        return SetupResult(table_created=table_created, key_created=key_created)
