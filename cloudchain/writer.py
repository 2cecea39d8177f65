"""Every write of a row that makes or ends a version: save (and rollback, import, undelete),
delete and purge, each planned from the row as read and written through one loop (row_changes.py
adds the writes that change a row without a new version: tags, schedule, re-encryption).

The loop (RowWriter._write): read the row, plan the new item from what was read, and write it
conditionally on the row's revision. When the condition fails, DynamoDB returns the row as it
is: if it carries this write's id, the write had landed and only its reply was lost (botocore
retried it); otherwise another writer got in first, and the write is planned again from the
new state, until a deadline.

Every new version records who made it (SavedBy), when (SavedAt), how (Action) and why
(Comment).
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from . import crypto, layout, table
from .errors import CloudChainError, SecretNotFoundError, ValidationError, VersionConflictError
from .results import Deleted
from .schedule import KEEP, Keep
from .store import SecretStore, live
from .validation import merged_tags

log = logging.getLogger(__name__)
T = TypeVar("T")

# The longest pause between attempts of a write that lost a race.
RETRY_CAP = 0.5
DAY = 86_400


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


@dataclass(frozen=True)
class Why:
    """How and why a version is made: its Action and Comment."""

    action: str = "save"
    comment: str | None = None


class RowWriter:
    """Writes versioned rows of one table through a SecretStore."""

    def __init__(
        self,
        store: SecretStore,
        *,
        saved_by: Callable[[], str],
        history_size: int,
        recovery_days: int,
        conflict_deadline: float,
        new_rotate_every: int | None = None,
    ) -> None:
        self._store = store
        self.new_rotate_every = new_rotate_every  # the rotation period of a secret we create
        self._saved_by = saved_by
        self.history_size = history_size
        self.recovery_days = recovery_days
        self.conflict_deadline = conflict_deadline

    def _write(
        self,
        service: str,
        user: str,
        plan: Callable[[layout.StoredItem | None, str], Write[T] | None],
        doing: str,
    ) -> T | None:
        """Plan and write conditionally until the write lands; return its result (None: the
        plan found nothing to do).

        A write that loses a race retries after a random pause of up to one write cycle (the
        time from its read to its failed write), not an exponential backoff: with backoff
        growing on every loss, writers that just won keep winning and a loser starves.
        """
        store = self._store
        write_id = new_write_id()
        deadline = time.monotonic() + self.conflict_deadline
        item = store.get(service, user)
        while True:
            started = time.monotonic()
            write = plan(item, write_id)
            if write is None:
                return None
            try:
                if write.item is None:
                    assert item is not None
                    table.delete_item(store.dynamodb, store.tablename, item)
                else:
                    table.put_item(store.dynamodb, store.tablename, write.item, item)
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
            f"cannot {doing} {store.where(service, user)}: it kept changing under concurrent "
            f"writes for {self.conflict_deadline:g} s"
        )

    def _state(
        self, item: layout.StoredItem | None, row: layout.StoredItem | None, write_id: str
    ) -> layout.RowState:
        """Return the row-level attributes of the next write: the revision after item's (the
        row as stored), and the retention and tags of row (the row as it counts: None when it
        is absent or past its recovery window)."""
        revision = (item.revision or 0) + 1 if item is not None else 1
        if row is None:
            return layout.RowState(
                revision=revision,
                write_id=write_id,
                retention=self.history_size,
                rotate_every=self.new_rotate_every,
            )
        return layout.RowState(
            revision=revision,
            write_id=write_id,
            retention=row.retention or self.history_size,
            tags=dict(row.tags),
            rotate_every=row.rotate_every,
            pending=row.pending,  # every write keeps the staged version and a rotation's lease
            lease=row.lease,
        )

    def _version(
        self, version: int, write_id: str, why: Why, **stored: Any
    ) -> layout.StoredVersion:
        return layout.StoredVersion(
            version=version,
            saved_at=utc_now(),
            write_id=write_id,
            saved_by=self._saved_by(),
            action=why.action,
            comment=why.comment,
            **stored,
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
        why: Why = Why(),
        tags: Mapping[str, str] | None = None,
        untag: Collection[str] = (),
        only_if_deleted: bool = False,
        rotate_every: int | Keep | None = KEEP,
        not_after: str | None = None,
    ) -> int:
        """Write plaintext as the next version in one conditional PutItem; return its number.

        not_after is the new value's hard expiry; rotate_every the secret's period (KEEP: as
        it was, or the writer's new_rotate_every for a secret that does not exist yet)."""
        store = self._store
        keys = crypto.context_keys_for(binary)
        # The version is bound into the ciphertext, so encrypt again only when it changes.
        encrypted: dict[int, tuple[bytes, str]] = {}

        def plan(item: layout.StoredItem | None, write_id: str) -> Write[int]:
            row = live(item)
            if only_if_deleted and (row is None or not row.deleted):
                raise SecretNotFoundError(f"{store.where(service, user)} is not deleted")
            current = row.current.version if row is not None else 0
            if expect_version is not None and current != expect_version:
                raise VersionConflictError(
                    f"{store.where(service, user)} is at version {current}, not "
                    f"{expect_version}; nothing was saved",
                    current_version=current,
                )
            version = row.next_version if row is not None else 1  # past a pending version
            if version not in encrypted:
                context = crypto.context_for(keys, service, user, version)
                encrypted[version] = crypto.encrypt(store.kms, key, plaintext, context)
            blob, key_arn = encrypted[version]
            new = self._version(
                version,
                write_id,
                why,
                ciphertext=blob,
                context_keys=keys,
                scheme=crypto.scheme_of(len(plaintext)),
                binary=binary,
                key_arn=key_arn,
                digest=crypto.digest(blob),
                not_after=not_after,
            )
            state = self._state(item, row, write_id)
            state = replace(
                state,
                retention=history_size or state.retention,
                tags=merged_tags(state.tags, tags, untag),
                rotate_every=state.rotate_every if isinstance(rotate_every, Keep) else rotate_every,
            )
            history = []
            if row is not None:
                history = [store.rebound(service, user, row.current), *row.history]
            kept = history[: state.retention - 1]
            return Write(layout.build_item(service, user, new, kept, state), version)

        result = self._write(service, user, plan, why.action)
        assert result is not None
        log.debug("saved %s/%s version %d in %s", service, user, result, store.tablename)
        return result

    def delete(self, service: str, user: str, why: Why) -> Deleted:
        """Delete a secret, recoverably: its current ciphertext moves into History under a new
        version that records the delete, and the row expires after the recovery window."""
        store = self._store

        def plan(item: layout.StoredItem | None, write_id: str) -> Write[Deleted]:
            row = live(item)
            if row is None or row.deleted:
                raise store.not_found(service, user)
            version = row.next_version
            record = self._version(version, write_id, why, ciphertext=None, context_keys=None)
            state = self._state(item, row, write_id)
            expires_at = int(time.time()) + self.recovery_days * DAY
            state = replace(state, expires_at=expires_at, pending=None)  # discards a pending one
            # The delete record keeps as many older versions as the secret keeps values, so
            # the value it hides is always there to undelete.
            history = [store.rebound(service, user, row.current), *row.history]
            new_item = layout.build_item(service, user, record, history[: state.retention], state)
            return Write(new_item, Deleted(version, state.expires_at or 0))

        result = self._write(service, user, plan, "delete")
        assert result is not None
        return result

    def purge(self, service: str, user: str, force: bool) -> None:
        """Delete a row for good, every version; only a deleted one unless force.

        Unlike every other command, it sees a deleted secret past its recovery window: the
        item is still there, ciphertexts and all, until DynamoDB's TTL gets to it.
        """
        store = self._store

        def plan(item: layout.StoredItem | None, write_id: str) -> Write[None]:
            if item is None:
                raise store.not_found(service, user)
            if not item.deleted and not force:
                raise ValidationError(
                    f"{store.where(service, user)} is not deleted; `cchain --delete` it first, "
                    "or add --force to destroy it and every version at once"
                )
            return Write(None, None)

        self._write(service, user, plan, "purge")
