"""Versioned, encrypted rows of one table: composes crypto (KMS) and table (DynamoDB).

Below CloudChain: no configuration files, no input checks, no cache and no error translation;
CloudChain does those around every call made here.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

from . import crypto, table
from .clients import Clients
from .errors import CloudChainError, SecretNotFoundError, VersionConflictError

log = logging.getLogger(__name__)

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
            raise SecretNotFoundError(f"no secret for {service}/{user} in table '{self.tablename}'")
        return item

    def decrypt(self, service: str, user: str, stored: table.StoredVersion) -> bytes:
        """Decrypt one stored version with the encryption context it records."""
        context = crypto.context_for(stored.context_keys, service, user, stored.version)
        return crypto.decrypt(self.kms, stored.ciphertext, context)

    def plaintext(self, service: str, user: str, version: int | None) -> bytes:
        """Return the plaintext of the latest version, or of a retained one."""
        item = self.load(service, user)
        stored = item.current if version is None else item.find(version)
        if stored is None:
            retained = ", ".join(str(v.version) for v in item.versions)
            raise SecretNotFoundError(
                f"version {version} of {service}/{user} in table '{self.tablename}' "
                f"does not exist or was pruned (retained: {retained})"
            )
        return self.decrypt(service, user, stored)

    def save(
        self, service: str, user: str, plaintext: bytes, key: str, expect_version: int | None
    ) -> int:
        """Write plaintext as the next version in one conditional PutItem; return its number."""
        # The version is bound into the ciphertext, so encrypt again only when it changes.
        encrypted: dict[int, bytes] = {}
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
            new = table.StoredVersion(
                version, encrypted[version], utc_now(), crypto.VERSIONED_CONTEXT
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

    def service_items(self, service: str) -> list[table.StoredItem]:
        """Return every row of one service, sorted by user: one paginated Query."""
        return sorted(
            table.query_items(self.dynamodb, self.tablename, service), key=lambda i: i.user
        )

    def delete(self, service: str, user: str) -> bool:
        """Delete a row with every version; return whether it existed."""
        return table.delete_item(self.dynamodb, self.tablename, service, user)

    def keys(self, service: str | None) -> list[tuple[str, str]]:
        """Return sorted (service, user) pairs, of one service or of the whole table."""
        return sorted(table.iter_keys(self.dynamodb, self.tablename, service))

    def ensure_key(self, alias: str) -> bool:
        """Create a symmetric key behind alias unless the alias exists; return whether created."""
        if crypto.key_exists(self.kms, alias):
            return False
        crypto.create_key_with_alias(self.kms, alias)
        return True

    def ensure_table(self) -> bool:
        """Create the table unless it exists, wait until ACTIVE; return whether created."""
        return table.create_table(self.dynamodb, self.tablename)
