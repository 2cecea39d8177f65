"""Writing imported versions: one conditional write per row appends every version not yet
imported, in the source's order, each recording where it came from. A re-run finds the
versions it already wrote by their Source and SourceVersion and writes only the rest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .. import crypto, layout
from ..errors import VersionConflictError
from ..store import live
from ..writer import RowWriter, Why, Write
from .model import SourceSecret, SourceVersion

# A comment is at most 256 characters (validation.MAX_COMMENT); Source keeps the whole name.
COMMENT_ROOM = 256


@dataclass(frozen=True)
class Incoming:
    """A source version read and ready to write."""

    version: SourceVersion
    plaintext: bytes = field(repr=False)  # never in a repr, a log or a traceback's locals
    binary: bool = False


def foreign_versions(item: layout.StoredItem | None, origin: str) -> int:
    """How many retained versions of a row did not come from origin (0: none, or no row)."""
    row = live(item)
    if row is None:
        return 0
    return sum(1 for v in row.versions if v.source != origin)


def _held(row: layout.StoredItem | None, origin: str) -> set[str | None]:
    """The source version ids a row holds from origin, its pending version's included."""
    return {v.source_version for v in row.all_versions if v.source == origin} if row else set()


def still_to_import(item: layout.StoredItem | None, secret: SourceSecret) -> list[SourceVersion]:
    """The source versions after the newest one the row already holds, in order."""
    row = live(item)
    held = _held(row, secret.origin)
    versions = [v for v in secret.versions if not v.pending]
    newest = max((n for n, v in enumerate(versions) if v.version_id in held), default=-1)
    return versions[newest + 1 :]


def pending_to_import(item: layout.StoredItem | None, secret: SourceSecret) -> SourceVersion | None:
    """The source's pending version (Secrets Manager's AWSPENDING), unless the row holds it
    already, or holds a pending version of its own, which an import never replaces."""
    row = live(item)
    pending = next((v for v in secret.versions if v.pending), None)
    if pending is None or pending.version_id in _held(row, secret.origin):
        return None
    if row is not None and row.pending is not None and row.pending.source != secret.origin:
        return None
    return pending


def comment_for(origin: str, version_id: str) -> str:
    """The Comment of an imported version: where it came from, cut to fit."""
    text = f"imported from {origin} version {version_id}"
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= COMMENT_ROOM else text[: COMMENT_ROOM - 3] + "..."


class ImportConflict(VersionConflictError):
    """The row holds versions that did not come from this source, and --append was not given."""


class ImportWriter(RowWriter):
    """RowWriter's one conditional loop, writing many imported versions of a row at once."""

    def append(
        self,
        service: str,
        user: str,
        secret: SourceSecret,
        incoming: Sequence[Incoming],
        key: str,
        *,
        append: bool,
        pending: Incoming | None = None,
    ) -> int:
        """Write the incoming versions the row does not hold yet, and pending as the row's
        pending version (a staged one, see staging.py); return how many were written."""
        store = self._store
        encrypted: dict[tuple[str, int], tuple[bytes, str]] = {}

        def plan(item: layout.StoredItem | None, write_id: str) -> Write[int] | None:
            row = live(item)
            if not append and foreign_versions(row, secret.origin):
                current = row.current.version if row is not None else 0
                raise ImportConflict(
                    f"{store.where(service, user)} holds versions that did not come from "
                    f"{secret.origin}; nothing was written to it",
                    current_version=current,
                    hint="add --append to add the imported versions after them",
                )
            wanted = {v.version_id for v in still_to_import(row, secret)}
            todo = [entry for entry in incoming if entry.version.version_id in wanted]
            staged = pending if pending and pending_to_import(row, secret) else None
            if not todo and (staged is None or row is None):
                return None
            state = self._state(item, row, write_id)
            first = row.next_version if row is not None else 1  # past a pending version
            new = [
                self._imported(
                    service, user, secret.origin, entry, first + n, key, write_id, encrypted
                )
                for n, entry in enumerate(todo)
            ]
            if staged is not None:
                number = first + len(todo)
                state = replace(
                    state,
                    pending=self._imported(
                        service, user, secret.origin, staged, number, key, write_id, encrypted
                    ),
                )
            history = [*reversed(new[:-1])]
            if row is not None:
                if not new:  # only the pending version is new: the current one stays
                    new = [row.current]
                else:
                    history.append(store.rebound(service, user, row.current))
                history += row.history
            kept = history[: state.retention - 1]
            written = len(todo) + (staged is not None)
            return Write(layout.build_item(service, user, new[-1], kept, state), written)

        written = self._write(service, user, plan, "import")
        return written or 0

    def _imported(
        self,
        service: str,
        user: str,
        origin: str,
        entry: Incoming,
        number: int,
        key: str,
        write_id: str,
        encrypted: dict[tuple[str, int], tuple[bytes, str]],
    ) -> layout.StoredVersion:
        # The version number is bound into the ciphertext: encrypt again only when it moves.
        keys = crypto.context_keys_for(entry.binary)
        slot = (entry.version.version_id, number)
        if slot not in encrypted:
            context = crypto.context_for(keys, service, user, number)
            encrypted[slot] = crypto.encrypt(self._store.kms, key, entry.plaintext, context)
        blob, key_arn = encrypted[slot]
        why = Why("import", comment_for(origin, entry.version.version_id))
        version = self._version(
            number,
            write_id,
            why,
            ciphertext=blob,
            context_keys=keys,
            scheme=crypto.scheme_of(len(entry.plaintext)),
            binary=entry.binary,
            key_arn=key_arn,
            digest=crypto.digest(blob),
        )
        return replace(
            version,
            source=origin,
            source_version=entry.version.version_id,
            source_time=entry.version.time,
        )
