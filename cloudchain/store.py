"""Versioned, encrypted rows of one table: composes crypto (KMS) and table (DynamoDB).

SecretStore reads rows, decides how each version may be decrypted (its binding), decrypts,
and re-binds versions under another key or context; writer.RowWriter writes rows with it.

Below CloudChain: no configuration files, no input checks, no cache and no error translation;
CloudChain does those around every call made here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from . import crypto, layout, table
from .clients import Clients
from .errors import IntegrityError, SecretNotFoundError, aws_error_code
from .summary import RowSummary

log = logging.getLogger(__name__)
T = TypeVar("T")


def expired(expires_at: int | None, now: float | None = None) -> bool:
    """Whether a deleted secret's recovery window has passed."""
    return expires_at is not None and expires_at <= (time.time() if now is None else now)


def live(item: layout.StoredItem | None) -> layout.StoredItem | None:
    """Return the row unless it is a deleted secret past its recovery window: that is gone for
    every command, even before DynamoDB's TTL removes the item."""
    if item is not None and item.deleted and expired(item.expires_at):
        return None
    return item


def stage_of(item: layout.StoredItem, stage: str) -> layout.StoredVersion | None:
    """Return the version a staging label names: "pending" (staged, not yet current),
    "current", or "previous" (current before the last save or promote); None if none."""
    if stage == "pending":
        return item.pending
    if stage == "previous":
        return next((v for v in item.history if v.action != layout.ABORT), None)
    return item.current


def check_pending(item: layout.StoredItem, where: str) -> None:
    """Refuse a pending version numbered like a retained one: it never is when staged, and
    a ciphertext replayed there under its own number would decrypt."""
    pending = item.pending
    if pending is not None and any(v.version == pending.version for v in item.versions):
        raise IntegrityError(
            f"{where}: pending version {pending.version} repeats a retained version's number; "
            "refused as a replayed ciphertext"
        )


class SecretStore:
    """Reads, decrypts and writes versioned secrets in one DynamoDB table."""

    def __init__(self, clients: Clients, tablename: str, *, allow_legacy: bool = True) -> None:
        self._clients = clients
        self.tablename = tablename
        self.allow_legacy = allow_legacy
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

    def where(self, service: str, user: str, version: int | None = None) -> str:
        """Name a row, or one version of it, in messages."""
        which = f" version {version}" if version is not None else ""
        return f"{service}/{user}{which} in table '{self.tablename}'"

    def not_found(self, service: str, user: str) -> SecretNotFoundError:
        """Return the error for a row that does not exist."""
        return SecretNotFoundError(f"no secret for {self.where(service, user)}")

    def get(self, service: str, user: str) -> layout.StoredItem | None:
        """Return the row of service/user as it is stored, or None."""
        return table.get_item(self.dynamodb, self.tablename, service, user)

    def load(self, service: str, user: str) -> layout.StoredItem:
        """Return the row of service/user, deleted or not, or raise SecretNotFoundError when
        there is none or it is past its recovery window."""
        item = live(self.get(service, user))
        if item is None:
            raise self.not_found(service, user)
        return item

    def load_secret(self, service: str, user: str) -> layout.StoredItem:
        """Return the row of a secret that is not deleted, or raise SecretNotFoundError."""
        item = self.load(service, user)
        if item.deleted:
            raise SecretNotFoundError(
                f"{self.where(service, user)} is deleted (`cchain --undelete` restores it)"
            )
        return item

    def version_of(
        self, item: layout.StoredItem, version: int | None, stage: str = "current"
    ) -> layout.StoredVersion:
        """Return the current, a retained or a staged version of a row, or raise
        SecretNotFoundError."""
        if stage != "current":
            if stage == "pending":
                check_pending(item, self.where(item.service, item.user))
            staged = stage_of(item, stage)
            if staged is None:
                raise SecretNotFoundError(
                    f"{self.where(item.service, item.user)} has no {stage} version"
                )
            return staged
        stored = item.current if version is None else item.find(version)
        if stored is None:
            retained = ", ".join(str(v.version) for v in item.versions)
            raise SecretNotFoundError(
                f"version {version} of {self.where(item.service, item.user)} "
                f"does not exist or was pruned (retained: {retained})"
            )
        return stored

    def plaintext(
        self, service: str, user: str, version: int | None, stage: str = "current"
    ) -> tuple[bytes, bool, int]:
        """Return the plaintext of the latest version, a retained or a staged one, whether it
        was saved as bytes, and its version number."""
        item = self.load_secret(service, user)
        stored = self.version_of(item, version, stage)
        return (*self.decrypt(service, user, stored), stored.version)

    def decrypt(self, service: str, user: str, stored: layout.StoredVersion) -> tuple[bytes, bool]:
        """Decrypt one stored version; return its plaintext and whether it is binary."""
        (plaintext, _), binary = self._decrypt(service, user, stored)
        return plaintext, binary

    def _decrypt(
        self, service: str, user: str, stored: layout.StoredVersion
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
        self, service: str, user: str, stored: layout.StoredVersion
    ) -> tuple[dict[str, str] | None, bool]:
        """Return the context a version must decrypt under (None: try the legacy contexts) and
        whether it is binary, refusing a version whose binding cannot be trusted."""
        where = self.where(service, user, stored.version)
        if stored.ciphertext is None:
            what = "an abort" if stored.action == layout.ABORT else "a delete"
            raise SecretNotFoundError(f"{where} is the record of {what} and holds no secret")
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
        self, service: str, user: str, stored: layout.StoredVersion, call: Callable[[], T]
    ) -> T:
        try:
            return call()
        except IntegrityError as err:
            raise IntegrityError(f"{self.where(service, user, stored.version)}: {err}") from None

    def _with_legacy_context(
        self, service: str, user: str, stored: layout.StoredVersion
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
            f"{self.where(service, user)}: the legacy ciphertext decrypts under no known context"
        )

    def service_items(self, service: str) -> list[layout.StoredItem]:
        """Return every secret of one service that is not deleted, sorted by user: one
        paginated Query."""
        items = (live(i) for i in table.query_items(self.dynamodb, self.tablename, service))
        return sorted((i for i in items if i is not None and not i.deleted), key=lambda i: i.user)

    def summaries(self, service: str | None) -> list[RowSummary]:
        """Return a summary of every row (or one service's), sorted, reading no ciphertext."""
        rows = table.iter_summaries(self.dynamodb, self.tablename, service)
        return sorted(rows, key=lambda r: (r.service, r.user))

    # -- re-binding versions ------------------------------------------------------------------

    def rebound(
        self, service: str, user: str, stored: layout.StoredVersion
    ) -> layout.StoredVersion:
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

    def moved(
        self, service: str, user: str, stored: layout.StoredVersion, key: str, key_arn: str
    ) -> layout.StoredVersion:
        """Return a version under key and bound as a new version of its kind would be: the
        same version when KMS says it already is (a wrong KeyId alone is corrected)."""
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
