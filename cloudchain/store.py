"""Versioned, encrypted rows of one table: composes crypto (KMS) and table (DynamoDB).

Below CloudChain: no configuration files, no input checks, no cache and no error translation;
CloudChain does those around every call made here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

from . import crypto, table
from .clients import Clients
from .errors import (
    CloudChainError,
    IntegrityError,
    SecretNotFoundError,
    VersionConflictError,
    aws_error_code,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Saves that lose a race with another save retry with full jitter, this many times at most.
SAVE_ATTEMPTS = 10
RETRY_BASE = 0.05
RETRY_CAP = 1.0


def utc_now() -> str:
    """Return the current UTC time as recorded in SavedAt."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SecretStore:
    """Reads, decrypts and writes versioned secrets in one DynamoDB table."""

    def __init__(self, clients: Clients, tablename: str, history_size: int) -> None:
        self._clients = clients
        self.tablename = tablename
        self.history_size = history_size
        self._legacy_hit: str | None = None  # the legacy context that last decrypted a row

    @property
    def dynamodb(self) -> Any:
        """The DynamoDB client."""
        return self._clients.get("dynamodb")

    @property
    def kms(self) -> Any:
        """The KMS client."""
        return self._clients.get("kms")

    def load(self, service: str, user: str) -> table.StoredItem:
        """Return the row of service/user, or raise SecretNotFoundError."""
        item = table.get_item(self.dynamodb, self.tablename, service, user)
        if item is None:
            raise self._not_found(service, user)
        return item

    def _not_found(self, service: str, user: str) -> SecretNotFoundError:
        return SecretNotFoundError(f"no secret for {service}/{user} in table '{self.tablename}'")

    def decrypt(self, service: str, user: str, stored: table.StoredVersion) -> bytes:
        """Decrypt one stored version with the encryption context it records (or, for a
        legacy row, the first legacy context that works)."""
        plaintext, _ = self._with_context(
            service,
            user,
            stored,
            lambda context: crypto.decrypt(self.kms, stored.scheme, stored.ciphertext, context),
        )
        return plaintext

    def _with_context(
        self,
        service: str,
        user: str,
        stored: table.StoredVersion,
        call: Callable[[dict[str, str]], T],
    ) -> tuple[T, dict[str, str]]:
        """Run a KMS call with the version's context; return its result and the context."""
        where = f"{service}/{user} version {stored.version} in table '{self.tablename}'"
        if stored.digest is not None and crypto.digest(stored.ciphertext) != stored.digest:
            raise IntegrityError(f"{where}: the stored ciphertext does not match its digest")
        if stored.context_keys is not None:
            context = crypto.context_for(stored.context_keys, service, user, stored.version)
            return call(context), context
        # A legacy row: try each context it may use, the one that last worked first, so a
        # table of legacy rows costs one KMS call per read after the first.
        candidates = crypto.legacy_contexts(service, user)
        candidates.sort(key=lambda pair: pair[0] != self._legacy_hit)
        for name, context in candidates:
            try:
                result = call(context)
            except Exception as err:
                if aws_error_code(err) == "InvalidCiphertextException":
                    continue
                raise
            self._legacy_hit = name
            return result, context
        raise IntegrityError(f"{where}: the ciphertext decrypts under no known context")

    def plaintext(self, service: str, user: str, version: int | None) -> tuple[bytes, bool]:
        """Return the plaintext of the latest version, or of a retained one, and whether it
        was saved as bytes."""
        item = self.load(service, user)
        stored = item.current if version is None else item.find(version)
        if stored is None:
            retained = ", ".join(str(v.version) for v in item.versions)
            raise SecretNotFoundError(
                f"version {version} of {service}/{user} in table '{self.tablename}' "
                f"does not exist or was pruned (retained: {retained})"
            )
        return self.decrypt(service, user, stored), stored.binary

    def save(
        self,
        service: str,
        user: str,
        plaintext: bytes,
        key: str,
        expect_version: int | None,
        binary: bool = False,
    ) -> int:
        """Write plaintext as the next version in one conditional PutItem; return its number."""
        # The version is bound into the ciphertext, so encrypt again only when it changes.
        encrypted: dict[int, tuple[bytes, str]] = {}
        for attempt in range(SAVE_ATTEMPTS):
            item = table.get_item(self.dynamodb, self.tablename, service, user)
            current = item.current.version if item else 0
            if expect_version is not None and current != expect_version:
                raise VersionConflictError(
                    f"{service}/{user} in table '{self.tablename}' is at version {current}, "
                    f"not {expect_version}; nothing was saved",
                    current_version=current,
                )
            version = current + 1
            if version not in encrypted:
                context = crypto.context_for(crypto.VERSIONED_CONTEXT, service, user, version)
                encrypted[version] = crypto.encrypt(self.kms, key, plaintext, context)
            blob, key_arn = encrypted[version]
            new = table.StoredVersion(
                version=version,
                ciphertext=blob,
                saved_at=utc_now(),
                context_keys=crypto.VERSIONED_CONTEXT,
                scheme=crypto.scheme_of(len(plaintext)),
                binary=binary,
                key_arn=key_arn,
                digest=crypto.digest(blob),
            )
            kept = list(item.versions[: self.history_size - 1]) if item else []
            try:
                new_item = table.build_item(service, user, new, kept)
                table.put_item(self.dynamodb, self.tablename, new_item, item)
            except table.ConditionFailed:
                # Another save won the race: read again and retry with the next version number.
                import random  # only here: a race is rare, and start-up time is not

                log.debug("save of %s/%s lost a race at version %d", service, user, version)
                time.sleep(random.uniform(0, min(RETRY_CAP, RETRY_BASE * 2**attempt)))
                continue
            log.debug("saved %s/%s version %d in %s", service, user, version, self.tablename)
            return version
        raise CloudChainError(
            f"cannot save {service}/{user} in table '{self.tablename}': {SAVE_ATTEMPTS} "
            "attempts lost races with concurrent saves"
        )

    def reencrypt(self, service: str, user: str, key: str, key_arn: str) -> bool:
        """Move every retained version of a row to key and the versioned context.

        Return False when there was nothing to do. The write is conditioned on the row as
        read, so a concurrent save is never overwritten; on such a race, start again.
        """
        for attempt in range(SAVE_ATTEMPTS):
            item = self.load(service, user)
            moved = [self._moved(service, user, v, key, key_arn) for v in item.versions]
            if all(new is old for new, old in zip(moved, item.versions)):
                return False
            new_item = table.build_item(service, user, moved[0], moved[1:])
            try:
                table.put_item(self.dynamodb, self.tablename, new_item, item)
            except table.ConditionFailed:
                log.debug("re-encryption of %s/%s raced a save; again", service, user)
                time.sleep(RETRY_BASE * (attempt + 1))
                continue
            return True
        raise CloudChainError(
            f"cannot re-encrypt {service}/{user} in table '{self.tablename}': it kept changing"
        )

    def _moved(
        self, service: str, user: str, stored: table.StoredVersion, key: str, key_arn: str
    ) -> table.StoredVersion:
        if stored.context_keys == crypto.VERSIONED_CONTEXT and stored.key_arn == key_arn:
            return stored
        target = crypto.context_for(crypto.VERSIONED_CONTEXT, service, user, stored.version)
        (blob, new_arn), _ = self._with_context(
            service,
            user,
            stored,
            lambda source: crypto.reencrypt(
                self.kms, stored.scheme, stored.ciphertext, source, key, target
            ),
        )
        return replace(
            stored,
            ciphertext=blob,
            context_keys=crypto.VERSIONED_CONTEXT,
            key_arn=new_arn,
            digest=crypto.digest(blob),
        )

    def all_keys(self, service: str | None) -> list[tuple[str, str]]:
        """Return sorted (service, user) of one service, or of the whole table."""
        return [(s, u) for s, u, _ in self.keys(service)]

    def service_items(self, service: str) -> list[table.StoredItem]:
        """Return every row of one service, sorted by user: one paginated Query."""
        return sorted(
            table.query_items(self.dynamodb, self.tablename, service), key=lambda i: i.user
        )

    def delete(self, service: str, user: str) -> None:
        """Delete a row with every version, or raise SecretNotFoundError."""
        if not table.delete_item(self.dynamodb, self.tablename, service, user):
            raise self._not_found(service, user)

    def keys(self, service: str | None) -> list[tuple[str, str, bool]]:
        """Return sorted (service, user, legacy), of one service or of the whole table."""
        return sorted(table.iter_keys(self.dynamodb, self.tablename, service))

    def key_arn(self, key: str) -> str:
        """Return the ARN of the key behind a key id or alias."""
        return crypto.key_arn(self.kms, key)

    def ensure_key(self, alias: str) -> bool:
        """Create a symmetric key behind alias unless the alias exists; return whether created."""
        if crypto.key_exists(self.kms, alias):
            return False
        crypto.create_key_with_alias(self.kms, alias)
        return True

    def ensure_table(self) -> bool:
        """Create the table unless it exists, wait until ACTIVE; return whether created."""
        return table.create_table(self.dynamodb, self.tablename)
