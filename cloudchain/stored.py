"""A row as the table holds it, decoded but still encrypted: its versions (current, retained,
pending), its rotation lease, and the row-level state a write sets. layout.py says how these
map onto DynamoDB attributes; nothing here knows the attribute names or calls AWS."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoredVersion:
    """One version as stored: the ciphertext is still encrypted."""

    version: int
    ciphertext: bytes | None  # None: the version that deleted the secret
    saved_at: str | None
    context_keys: tuple[str, ...] | None  # None: not recorded
    scheme: str = "direct"
    binary: bool = False
    key_arn: str | None = None
    digest: str | None = None
    write_id: str | None = None
    saved_by: str | None = None
    action: str | None = None
    comment: str | None = None
    not_after: str | None = None  # ISO 8601 UTC: the value expires on its own then
    # An imported version's origin: source and name, the source's version id, its time.
    source: str | None = None
    source_version: str | None = None
    source_time: str | None = None
    # True only for a reference row's current version: it may take the legacy contexts.
    reference: bool = False

    @property
    def deleted(self) -> bool:
        """Whether this version is the record of a delete, holding no ciphertext."""
        return self.ciphertext is None


@dataclass(frozen=True)
class Lease:
    """Who holds a rotation of a row (a random id), and until when (epoch seconds)."""

    holder: str
    until: int


@dataclass(frozen=True)
class StoredItem:
    """One row: its current version, the older versions it retains (newest first), and the
    row-level attributes."""

    service: str
    user: str
    current: StoredVersion
    history: tuple[StoredVersion, ...]
    revision: int | None = None  # None: last written before revisions
    last_write_id: str | None = None
    retention: int | None = None  # None: not recorded
    tags: dict[str, str] = field(default_factory=dict)
    expires_at: int | None = None
    rotate_every: int | None = None  # seconds; None: no rotation schedule
    # How a row written before revisions is recognised in a conditional write.
    raw_secret: dict[str, Any] | None = field(default=None, repr=False)
    has_version: bool = True
    pending: StoredVersion | None = None
    lease: Lease | None = None

    @property
    def versions(self) -> tuple[StoredVersion, ...]:
        """Every retained version, newest first."""
        return (self.current, *self.history)

    @property
    def deleted(self) -> bool:
        """Whether the secret is deleted (recoverable until expires_at)."""
        return self.current.deleted

    @property
    def all_versions(self) -> tuple[StoredVersion, ...]:
        """Every retained version and the pending one."""
        return self.versions if self.pending is None else (self.pending, *self.versions)

    @property
    def next_version(self) -> int:
        """The number a new version takes: past every retained one and the pending one."""
        return max(v.version for v in self.all_versions) + 1

    def find(self, version: int) -> StoredVersion | None:
        """Return the retained or pending version numbered version, or None."""
        return next((v for v in self.all_versions if v.version == version), None)

    def wrote(self, write_id: str) -> bool:
        """Whether the write with this id landed: the last write, or one retained version's."""
        return self.last_write_id == write_id or any(
            v.write_id == write_id for v in self.all_versions
        )


@dataclass(frozen=True)
class RowState:
    """The row-level attributes a write sets alongside the versions."""

    revision: int
    write_id: str
    retention: int
    tags: dict[str, str] = field(default_factory=dict)
    expires_at: int | None = None
    rotate_every: int | None = None
    pending: StoredVersion | None = None
    lease: Lease | None = None
