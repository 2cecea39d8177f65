"""The staged writes of a row: a pending version, its promotion and its abort, and the lease a
rotation holds; each is planned from the row as read and written through RowWriter's one
conditional loop, like every other write.

A pending version sits in the Pending attribute, beside the current one in the reference
attributes, so no reader of the current value ever sees it. It takes the next version number
when it is written and keeps it when promoted, and its ciphertext is bound to its row and
version like any other (crypto.context_for), so a swapped or replayed one fails to decrypt.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone

from . import crypto, layout
from .errors import SecretNotFoundError, ValidationError, VersionConflictError
from .row_changes import RowChanges
from .schedule import iso
from .store import check_pending, live
from .writer import Why, Write, utc_now


class RotationBusyError(VersionConflictError):
    """Another rotation of the secret holds its lease; nothing was done."""


class StagedWriter(RowChanges):
    """RowChanges with the staged writes: pending versions, promote, abort, rotation leases."""

    def _live_secret(
        self, item: layout.StoredItem | None, service: str, user: str
    ) -> layout.StoredItem:
        row = live(item)
        if row is None or row.deleted:
            raise self._store.not_found(service, user)
        return row

    def _current(self, row: layout.StoredItem) -> layout.StoredVersion:
        # A reference row gains attributes here: its version is bound to it first, or it
        # would no longer decrypt (only a bare reference row may take the legacy contexts).
        return self._store.rebound(row.service, row.user, row.current)

    def save_pending(
        self,
        service: str,
        user: str,
        plaintext: bytes,
        key: str,
        *,
        binary: bool = False,
        why: Why,
        replace_pending: bool = False,
        not_after: str | None = None,
    ) -> int:
        """Write plaintext as the pending version of an existing secret (with its own hard
        expiry, not_after); return its number."""
        store = self._store
        keys = crypto.context_keys_for(binary)
        encrypted: dict[int, tuple[bytes, str]] = {}  # the version is bound into the ciphertext

        def plan(item: layout.StoredItem | None, write_id: str) -> Write[int]:
            row = self._live_secret(item, service, user)
            if row.pending is not None and not replace_pending:
                raise VersionConflictError(
                    f"{store.where(service, user)} already has pending version "
                    f"{row.pending.version}; nothing was saved",
                    current_version=row.current.version,
                    hint="--promote it, --abort it, or save with --replace-pending",
                )
            version = row.next_version
            if version not in encrypted:
                context = crypto.context_for(keys, service, user, version)
                encrypted[version] = crypto.encrypt(store.kms, key, plaintext, context)
            blob, key_arn = encrypted[version]
            pending = self._version(
                version, write_id, why, ciphertext=blob, context_keys=keys,
                scheme=crypto.scheme_of(len(plaintext)), binary=binary, key_arn=key_arn,
                digest=crypto.digest(blob), not_after=not_after,
            )  # fmt: skip
            state = replace(self._state(item, row, write_id), pending=pending)
            current = self._current(row)
            alone = layout.build_item(service, user, current, [], state)
            if layout.item_size(alone) > layout.ITEM_SIZE_LIMIT:
                # History makes room for a value; the current one cannot.
                raise ValidationError(
                    f"{store.where(service, user)}: the value is too large to stage beside the "
                    "current value (together over DynamoDB's item limit); nothing was saved",
                    hint="save it as the current value instead, or make it smaller",
                )
            history = list(row.history)
            return Write(layout.build_item(service, user, current, history, state), version)

        result = self._write(service, user, plan, "stage")
        assert result is not None
        return result

    def _pending(self, row: layout.StoredItem) -> layout.StoredVersion:
        check_pending(row, self._store.where(row.service, row.user))
        if row.pending is None:
            raise SecretNotFoundError(
                f"{self._store.where(row.service, row.user)} has no pending version"
            )
        return row.pending

    def _check_lease(self, row: layout.StoredItem, holder: str | None) -> None:
        lease = row.lease
        if holder is None and lease is not None and lease.until > time.time():
            # A promote by hand mid-rotation would make live a value the hook may not have
            # set or tested yet.
            raise RotationBusyError(
                f"{self._store.where(row.service, row.user)} is being rotated by another run; "
                "nothing was promoted",
                current_version=row.current.version,
                hint="wait for it, or for its lease to expire",
            )
        # No lease at all is no more this rotation's than another's: the row was purged and
        # made again (its version numbers with it) while the hook ran.
        if holder is not None and (row.lease is None or row.lease.holder != holder):
            raise RotationBusyError(
                f"another rotation of {self._store.where(row.service, row.user)} took over; "
                "nothing was promoted",
                current_version=row.current.version,
            )

    def promote(
        self,
        service: str,
        user: str,
        *,
        expect_version: int | None = None,
        why: Why,
        holder: str | None = None,
        pending_version: int | None = None,
    ) -> int:
        """Make the pending version current in one conditional write (the old current goes
        into History); return its number. holder: the rotation lease to check and clear;
        pending_version: only if the pending version is that one (the one a hook set)."""
        store = self._store

        def plan(item: layout.StoredItem | None, write_id: str) -> Write[int]:
            row = self._live_secret(item, service, user)
            pending = self._pending(row)
            self._check_lease(row, holder)
            current = row.current.version
            where = store.where(service, user)
            if expect_version is not None and current != expect_version:
                raise VersionConflictError(
                    f"{where} is at version {current}, not {expect_version}; nothing was promoted",
                    current_version=current,
                )
            if pending_version is not None and pending.version != pending_version:
                raise VersionConflictError(
                    f"{where}: pending version {pending_version} was replaced by "
                    f"{pending.version} while the hook ran; nothing was promoted",
                    current_version=current,
                    hint="run --rotate again to set and test the new pending version",
                )
            if pending.version < current:
                raise VersionConflictError(
                    f"{where}: pending version {pending.version} is older than the current "
                    f"version {current}, saved since; nothing was promoted",
                    current_version=current,
                    hint="--abort it and stage the value again",
                )
            # It becomes current now: when, by whom and why are the promotion's.
            promoted = replace(
                pending, saved_at=utc_now(), write_id=write_id, saved_by=self._saved_by(),
                action=why.action, comment=why.comment,
            )  # fmt: skip
            state = replace(self._state(item, row, write_id), pending=None)
            if holder is not None:
                state = replace(state, lease=None)
            history = [store.rebound(service, user, row.current), *row.history]
            kept = history[: state.retention - 1]
            return Write(layout.build_item(service, user, promoted, kept, state), pending.version)

        result = self._write(service, user, plan, "promote")
        assert result is not None
        return result

    def abort(self, service: str, user: str, why: Why) -> int:
        """Discard the pending version, leaving a record of it (no value) in History; return
        its number."""

        def plan(item: layout.StoredItem | None, write_id: str) -> Write[int]:
            row = self._live_secret(item, service, user)
            pending = self._pending(row)
            record = self._version(
                pending.version, write_id, why, ciphertext=None, context_keys=None
            )
            state = replace(self._state(item, row, write_id), pending=None)
            history = [record, *row.history][: state.retention]
            new_item = layout.build_item(service, user, self._current(row), history, state)
            return Write(new_item, pending.version)

        result = self._write(service, user, plan, "abort")
        assert result is not None
        return result

    def claim(
        self, service: str, user: str, holder: str, until: int, now: float
    ) -> layout.StoredItem:
        """Take the rotation lease of a secret until the epoch second until, unless another
        holder's lease runs past now (RotationBusyError); return the row as it was."""
        store = self._store

        def plan(item: layout.StoredItem | None, write_id: str) -> Write[layout.StoredItem]:
            row = self._live_secret(item, service, user)
            check_pending(row, store.where(service, user))  # before any hook is given it
            lease = row.lease
            if lease is not None and lease.holder != holder and lease.until > now:
                ends = iso(datetime.fromtimestamp(lease.until, timezone.utc))
                raise RotationBusyError(
                    f"{store.where(service, user)} is being rotated by another run until "
                    f"{ends}; nothing was done",
                    current_version=row.current.version,
                    hint="wait for it, or for its lease to expire",
                )
            state = replace(self._state(item, row, write_id), lease=layout.Lease(holder, until))
            new_item = layout.build_item(
                service, user, self._current(row), list(row.history), state
            )
            return Write(new_item, row)

        result = self._write(service, user, plan, "claim the rotation of")
        assert result is not None
        return result

    def release(self, service: str, user: str, holder: str) -> None:
        """Give up the rotation lease, if it is still holder's."""

        def plan(item: layout.StoredItem | None, write_id: str) -> Write[None] | None:
            row = live(item)
            if row is None or row.lease is None or row.lease.holder != holder:
                return None
            state = replace(self._state(item, row, write_id), lease=None)
            new_item = layout.build_item(
                service, user, self._current(row), list(row.history), state
            )
            return Write(new_item, None)

        self._write(service, user, plan, "release the rotation of")
