"""Versioned, encrypted rows of one table: composes crypto (KMS) and table (DynamoDB).

Every write goes through one loop, SecretStore._write: read the row, plan the new item from
what was read, and write it conditionally on the row's revision. When the condition fails,
the row is read again: if it carries this write's id, the write had landed and only its reply
was lost (botocore retried it); otherwise another writer got in first, and the write is
planned again from the new state, until a deadline.

Below CloudChain: no configuration files, no input checks, no cache and no error translation;
CloudChain does those around every call made here.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

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

# The longest pause between attempts of a write that lost a race.
RETRY_CAP = 0.5


def utc_now() -> str:
    """Return the current UTC time as recorded in SavedAt."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_write_id() -> str:
    """Return a random id that tells this write apart from every other."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Write(Generic[T]):
    """A planned write: the new item (None deletes the row) and what to report once it lands."""

    item: dict[str, Any] | None
    result: T


class SecretStore:
    """Reads, decrypts and writes versioned secrets in one DynamoDB table."""

    def __init__(
        self,
        clients: Clients,
        tablename: str,
        *,
        history_size: int,
        allow_legacy: bool = True,
        conflict_deadline: float = 10.0,
    ) -> None:
        self._clients = clients
        self.tablename = tablename
        self.history_size = history_size
        self.allow_legacy = allow_legacy
        self.conflict_deadline = conflict_deadline
        self._legacy_hit: str | None = None  # the legacy context that last decrypted a row

    @property
    def dynamodb(self) -> Any:
        """The DynamoDB client."""
        return self._clients.get("dynamodb")

    @property
    def kms(self) -> Any:
        """The KMS client."""
        return self._clients.get("kms")

    # -- reading -------------------------------------------------------------------------------

    def _get(self, service: str, user: str) -> table.StoredItem | None:
        return table.get_item(self.dynamodb, self.tablename, service, user)

    def _where(self, service: str, user: str) -> str:
        return f"{service}/{user} in table '{self.tablename}'"

    def not_found(self, service: str, user: str) -> SecretNotFoundError:
        """Return the error for a row that does not exist."""
        return SecretNotFoundError(f"no secret for {self._where(service, user)}")

    def load(self, service: str, user: str) -> table.StoredItem:
        """Return the row of service/user, or raise SecretNotFoundError."""
        item = self._get(service, user)
        if item is None:
            raise self.not_found(service, user)
        return item

    def version_of(self, item: table.StoredItem, version: int | None) -> table.StoredVersion:
        """Return the current or a retained version of a row, or raise SecretNotFoundError."""
        stored = item.current if version is None else item.find(version)
        if stored is None:
            retained = ", ".join(str(v.version) for v in item.versions)
            raise SecretNotFoundError(
                f"version {version} of {self._where(item.service, item.user)} "
                f"does not exist or was pruned (retained: {retained})"
            )
        return stored

    def plaintext(self, service: str, user: str, version: int | None) -> tuple[bytes, bool]:
        """Return the plaintext of the latest version, or of a retained one, and whether it
        was saved as bytes."""
        item = self.load(service, user)
        return self.decrypt(service, user, self.version_of(item, version))

    def decrypt(self, service: str, user: str, stored: table.StoredVersion) -> tuple[bytes, bool]:
        """Decrypt one stored version; return its plaintext and whether it is binary."""
        (plaintext, _), binary = self._decrypt(service, user, stored)
        return plaintext, binary

    def _decrypt(
        self, service: str, user: str, stored: table.StoredVersion
    ) -> tuple[tuple[bytes, str], bool]:
        context, binary = self._binding(service, user, stored)
        assert stored.ciphertext is not None  # _binding refuses a deleted version
        blob = stored.ciphertext
        if context is None:
            return self._with_legacy_context(service, user, stored), False
        return self._kms_call(
            service, user, stored, lambda: crypto.decrypt(self.kms, stored.scheme, blob, context)
        ), binary

    def _binding(
        self, service: str, user: str, stored: table.StoredVersion
    ) -> tuple[dict[str, str] | None, bool]:
        """Return the context a version must decrypt under (None: try the legacy contexts) and
        whether it is binary, refusing a version whose binding cannot be trusted."""
        where = f"{service}/{user} version {stored.version} in table '{self.tablename}'"
        if stored.ciphertext is None:
            raise SecretNotFoundError(f"{where} is the record of a delete and holds no secret")
        if stored.digest is not None and crypto.digest(stored.ciphertext) != stored.digest:
            raise IntegrityError(f"{where}: the stored ciphertext does not match its digest")
        weak = stored.reference or (
            stored.binary
            and stored.context_keys is not None
            and crypto.BINARY_CONTEXT[-1] not in stored.context_keys
        )
        if weak and not self.allow_legacy:
            raise IntegrityError(
                f"{where} is a legacy row, not bound to its row and version, and allow_legacy "
                "is off; run `cchain --reencrypt` to upgrade it"
            )
        if stored.reference:
            return None, False
        if weak:
            log.warning(
                "%s was saved as bytes before the binary flag was bound into its ciphertext; "
                "run `cchain --reencrypt` to bind it",
                where,
            )
        if stored.context_keys is None:
            # Only a bare reference row may go without a context: anything else carries
            # attributes only cloudchain writes, so a missing Context means tampering.
            raise IntegrityError(
                f"{where} records no encryption context although cloudchain wrote it; "
                "refused rather than read without its binding"
            )
        context = crypto.context_for(stored.context_keys, service, user, stored.version)
        return context, stored.binary or crypto.BINARY_CONTEXT[-1] in stored.context_keys

    def _kms_call(
        self, service: str, user: str, stored: table.StoredVersion, call: Callable[[], T]
    ) -> T:
        try:
            return call()
        except IntegrityError as err:
            raise IntegrityError(
                f"{service}/{user} version {stored.version} in table '{self.tablename}': {err}"
            ) from None

    def _with_legacy_context(
        self, service: str, user: str, stored: table.StoredVersion
    ) -> tuple[bytes, str]:
        # A reference row: try each context it may use, the one that last worked first, so a
        # table of legacy rows costs one KMS call per read after the first.
        assert stored.ciphertext is not None
        candidates = crypto.legacy_contexts(service, user)
        candidates.sort(key=lambda pair: pair[0] != self._legacy_hit)
        for name, context in candidates:
            try:
                result = crypto.decrypt(self.kms, stored.scheme, stored.ciphertext, context)
            except Exception as err:
                if aws_error_code(err) == "InvalidCiphertextException":
                    continue
                raise
            self._legacy_hit = name
            return result
        raise IntegrityError(
            f"{self._where(service, user)}: the legacy ciphertext decrypts under no known context"
        )

    def service_items(self, service: str) -> list[table.StoredItem]:
        """Return every row of one service, sorted by user: one paginated Query."""
        return sorted(
            table.query_items(self.dynamodb, self.tablename, service), key=lambda i: i.user
        )

    def summaries(self, service: str | None) -> list[table.RowSummary]:
        """Return a summary of every row (or one service's), sorted, reading no ciphertext."""
        rows = table.iter_summaries(self.dynamodb, self.tablename, service)
        return sorted(rows, key=lambda r: (r.service, r.user))

    # -- writing -------------------------------------------------------------------------------

    def _write(
        self,
        service: str,
        user: str,
        plan: Callable[[table.StoredItem | None, str], Write[T] | None],
        doing: str,
    ) -> T | None:
        """Plan and write conditionally until the write lands; return its result (None: the
        plan found nothing to do).

        A write that loses a race retries after a random pause of up to one write cycle (the
        time from its read to its failed write), not an exponential backoff: with backoff
        growing on every loss, writers that just won keep winning and a loser starves.
        """
        write_id = new_write_id()
        deadline = time.monotonic() + self.conflict_deadline
        item = self._get(service, user)
        while True:
            started = time.monotonic()
            write = plan(item, write_id)
            if write is None:
                return None
            try:
                if write.item is None:
                    assert item is not None
                    table.delete_item(self.dynamodb, self.tablename, item)
                else:
                    table.put_item(self.dynamodb, self.tablename, write.item, item)
                return write.result
            except table.ConditionFailed as failed:
                item = failed.current
            if item is None if write.item is None else item is not None and item.wrote(write_id):
                # The write went through and its reply was lost; botocore's retry then found
                # the row changed by that very write.
                log.debug(
                    "%s %s/%s: the write had landed; its reply was lost", doing, service, user
                )
                return write.result
            now = time.monotonic()
            if now >= deadline:
                break
            log.debug("%s %s/%s raced another write; planning again", doing, service, user)
            time.sleep(random.uniform(0, min(RETRY_CAP, now - started, deadline - now)))
        raise CloudChainError(
            f"cannot {doing} {self._where(service, user)}: it kept changing under concurrent "
            f"writes for {self.conflict_deadline:g} s"
        )

    def _row_state(self, item: table.StoredItem | None, write_id: str) -> table.RowState:
        """Return the row-level attributes of the next write: the revision after item's, this
        write's id, and the retention and tags the row recorded."""
        if item is None:
            return table.RowState(revision=1, write_id=write_id, retention=self.history_size)
        return table.RowState(
            revision=(item.revision or 0) + 1,
            write_id=write_id,
            retention=item.retention or self.history_size,
            tags=dict(item.tags),
        )

    def _rebound(self, service: str, user: str, stored: table.StoredVersion) -> table.StoredVersion:
        """Return a reference row's current version bound to its row as version 1, so that it
        can move into History, where the legacy contexts are never tried."""
        if not stored.reference:
            return stored
        plaintext, key = self._decrypt(service, user, stored)[0]
        context = crypto.context_for(crypto.VERSIONED_CONTEXT, service, user, stored.version)
        blob, key_arn = crypto.encrypt(self.kms, key, plaintext, context)
        return replace(
            stored,
            ciphertext=blob,
            context_keys=crypto.VERSIONED_CONTEXT,
            scheme=crypto.scheme_of(len(plaintext)),
            key_arn=key_arn,
            digest=crypto.digest(blob),
            reference=False,
        )

    def save(
        self,
        service: str,
        user: str,
        plaintext: bytes,
        key: str,
        *,
        expect_version: int | None = None,
        binary: bool = False,
        history_size: int | None = None,
    ) -> int:
        """Write plaintext as the next version in one conditional PutItem; return its number."""
        keys = crypto.context_keys_for(binary)
        # The version is bound into the ciphertext, so encrypt again only when it changes.
        encrypted: dict[int, tuple[bytes, str]] = {}

        def plan(item: table.StoredItem | None, write_id: str) -> Write[int]:
            current = item.current.version if item is not None else 0
            if expect_version is not None and current != expect_version:
                raise VersionConflictError(
                    f"{self._where(service, user)} is at version {current}, not "
                    f"{expect_version}; nothing was saved",
                    current_version=current,
                )
            version = current + 1
            if version not in encrypted:
                context = crypto.context_for(keys, service, user, version)
                encrypted[version] = crypto.encrypt(self.kms, key, plaintext, context)
            blob, key_arn = encrypted[version]
            new = table.StoredVersion(
                version=version,
                ciphertext=blob,
                saved_at=utc_now(),
                context_keys=keys,
                scheme=crypto.scheme_of(len(plaintext)),
                binary=binary,
                key_arn=key_arn,
                digest=crypto.digest(blob),
                write_id=write_id,
            )
            state = self._row_state(item, write_id)
            if history_size is not None:
                state = replace(state, retention=history_size)
            history = []
            if item is not None:
                history = [self._rebound(service, user, item.current), *item.history]
            kept = history[: state.retention - 1]
            return Write(table.build_item(service, user, new, kept, state), version)

        result = self._write(service, user, plan, "save")
        assert result is not None
        log.debug("saved %s/%s version %d in %s", service, user, result, self.tablename)
        return result

    def delete(self, service: str, user: str) -> None:
        """Delete a row with every version, or raise SecretNotFoundError."""

        def plan(item: table.StoredItem | None, write_id: str) -> Write[None]:
            if item is None:
                raise self.not_found(service, user)
            return Write(None, None)

        self._write(service, user, plan, "delete")

    def reencrypt(self, service: str, user: str, key: str, key_arn: str) -> bool:
        """Move every retained version of a row to key and its current binding.

        Return False when there was nothing to do. Whether a version is already under the key
        is asked of KMS, never of the editable KeyId attribute.
        """

        def plan(item: table.StoredItem | None, write_id: str) -> Write[bool] | None:
            if item is None:
                return None
            moved = [self._moved(service, user, v, key, key_arn) for v in item.versions]
            if all(new is old for new, old in zip(moved, item.versions)):
                return None
            state = self._row_state(item, write_id)
            new_item = table.build_item(service, user, moved[0], moved[1:], state)
            return Write(new_item, True)

        moved: bool | None = self._write(service, user, plan, "re-encrypt")
        return bool(moved)

    def _moved(
        self, service: str, user: str, stored: table.StoredVersion, key: str, key_arn: str
    ) -> table.StoredVersion:
        if stored.ciphertext is None:
            return stored
        blob = stored.ciphertext
        source, binary = self._binding(service, user, stored)
        target_keys = crypto.context_keys_for(binary)
        target = crypto.context_for(target_keys, service, user, stored.version)
        if source is None:  # a reference row: into the versioned context, through plaintext
            plaintext, source_key = self._with_legacy_context(service, user, stored)
            new_blob, new_key = crypto.encrypt(self.kms, key, plaintext, target)
            moved = crypto.Reencrypted(new_blob, new_key, source_key)
        else:
            moved = self._kms_call(
                service,
                user,
                stored,
                lambda: crypto.reencrypt(self.kms, stored.scheme, blob, source, key, target),
            )
        if source == target and moved.source_key_arn == key_arn:
            # Already under the key and bound as today; only a wrong KeyId is corrected.
            return stored if stored.key_arn == key_arn else replace(stored, key_arn=key_arn)
        return replace(
            stored,
            ciphertext=moved.blob,
            context_keys=target_keys,
            binary=binary,
            key_arn=moved.key_arn,
            digest=crypto.digest(moved.blob),
            reference=False,
        )

    # -- keys and the table ------------------------------------------------------------------

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
