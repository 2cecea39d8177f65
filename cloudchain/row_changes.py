"""The writes that change a row without making a version: its tags, its rotation schedule, and
re-encryption under another key. Each is planned from the row as read and written through
RowWriter's conditional loop, like a save."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from . import layout
from .schedule import Keep
from .store import live
from .validation import merged_tags
from .writer import RowWriter, Write


class RowChanges(RowWriter):
    """RowWriter, plus the changes of a row that make no version."""

    def set_tags(
        self, service: str, user: str, tags: Mapping[str, str] | None, untag: Collection[str]
    ) -> dict[str, str]:
        """Set and remove tags of a secret without making a version; return its tags."""
        store = self._store
        unchanged: dict[str, str] = {}  # the tags, when the plan found them already so

        def plan(item: layout.StoredItem | None, write_id: str) -> Write[dict[str, str]] | None:
            row = live(item)
            if row is None or row.deleted:
                raise store.not_found(service, user)
            new_tags = merged_tags(row.tags, tags, untag)
            if new_tags == row.tags:
                unchanged.update(new_tags)
                return None
            state = replace(self._state(item, row, write_id), tags=new_tags)
            # A reference row gains attributes here: its version is bound to it first.
            current = store.rebound(service, user, row.current)
            new_item = layout.build_item(service, user, current, list(row.history), state)
            return Write(new_item, new_tags)

        result = self._write(service, user, plan, "tag")
        return result if result is not None else unchanged

    def set_schedule(
        self,
        service: str,
        user: str,
        rotate_every: int | Keep | None,
        not_after: str | Keep | None,
    ) -> tuple[int | None, str | None]:
        """Change a secret's rotation period and its current value's hard expiry without
        making a version (as tags are changed); return both as they now are."""
        store = self._store
        unchanged: list[tuple[int | None, str | None]] = []

        def plan(item: layout.StoredItem | None, write_id: str) -> Write[Any] | None:
            row = live(item)
            if row is None or row.deleted:
                raise store.not_found(service, user)
            period = row.rotate_every if isinstance(rotate_every, Keep) else rotate_every
            expiry = row.current.not_after if isinstance(not_after, Keep) else not_after
            if (period, expiry) == (row.rotate_every, row.current.not_after):
                unchanged.append((period, expiry))
                return None
            state = replace(self._state(item, row, write_id), rotate_every=period)
            # A reference row gains attributes here: its version is bound to it first.
            current = replace(store.rebound(service, user, row.current), not_after=expiry)
            new_item = layout.build_item(service, user, current, list(row.history), state)
            return Write(new_item, (period, expiry))

        result = self._write(service, user, plan, "schedule")
        return result if result is not None else unchanged[-1]

    def reencrypt(self, service: str, user: str, key: str, key_arn: str) -> bool:
        """Move every retained version of a row to key and its current binding, keeping who,
        when and why. Return False when there was nothing to do."""
        store = self._store

        def plan(item: layout.StoredItem | None, write_id: str) -> Write[bool] | None:
            row = live(item)
            if row is None:
                return None
            moved = [store.moved(service, user, v, key, key_arn) for v in row.all_versions]
            if all(new is old for new, old in zip(moved, row.all_versions, strict=True)):
                return None
            pending = moved.pop(0) if row.pending is not None else None
            state = replace(self._state(item, row, write_id), expires_at=row.expires_at)
            state = replace(state, pending=pending)
            new_item = layout.build_item(service, user, moved[0], moved[1:], state)
            return Write(new_item, True)

        moved: bool | None = self._write(service, user, plan, "re-encrypt")
        return bool(moved)
