"""What CloudChain methods return: plain, immutable records that never hold a secret value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .errors import IntegrityError

# A secret value: text, or bytes for a secret saved as bytes.
Secret = Union[str, bytes]


def secret_value(plaintext: bytes, binary: bool, where: str) -> Secret:
    """Return a decrypted secret as what it was saved as: bytes, or UTF-8 text."""
    if binary:
        return plaintext
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError(f"the secret of {where} is not UTF-8 text") from None


@dataclass(frozen=True)
class Versioned:
    """A secret's value with its version number."""

    value: Secret = field(repr=False)  # plaintext: never in a repr
    version: int


@dataclass(frozen=True)
class Entry:
    """One stored secret's name and tags, without its value."""

    service: str
    user: str
    # The row records no encryption context yet (written by cloudchain 0.x, the bare
    # reference recipe, or before versions); `cchain --reencrypt` upgrades it.
    legacy: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    # For a deleted secret: when, by whom, and when it is gone for good (epoch seconds).
    deleted_at: str | None = None
    deleted_by: str | None = None
    expires_at: int | None = None
    # Its rotation schedule (see schedule.py): the period in seconds, the current value's hard
    # expiry and when it falls due, ISO 8601 UTC; None where there is none.
    rotate_every: int | None = None
    not_after: str | None = None
    due_at: str | None = None


@dataclass(frozen=True)
class VersionInfo:
    """One retained version of a secret, without its value: who made it, when, how and why."""

    version: int
    saved_at: str | None  # ISO 8601 UTC; None for a value saved before versions existed
    saved_by: str | None = None  # the caller's ARN; "unknown" when STS did not say
    action: str | None = None  # save, rollback, import, delete, undelete, promote or abort
    comment: str | None = None
    not_after: str | None = None  # the value's hard expiry, ISO 8601 UTC
    # The secret's rotation period (seconds) and when it falls due: on the current version only.
    rotate_every: int | None = None
    due_at: str | None = None
    stage: str | None = None  # "pending", "current", "previous", or None for an older one


@dataclass(frozen=True)
class Deleted:
    """What a delete did: the version recording it, and when the secret is gone for good."""

    version: int
    expires_at: int  # epoch seconds


@dataclass(frozen=True)
class VersionDiff:
    """How two versions of a secret differ, without either value."""

    from_version: int
    to_version: int
    changed: bool
    from_bytes: int
    to_bytes: int
    from_lines: int
    to_lines: int
    # Line numbers (1-based) of the newer version that are new or changed; where lines were
    # only removed, the number of the line that now follows them. Empty for binary secrets.
    changed_lines: tuple[int, ...]
    binary: bool


@dataclass(frozen=True)
class RegionSetup:
    """What `setup` found or did in one replica region."""

    region: str
    table: str  # "added" (ReplicaUpdates sent) or "exists"
    key: str  # "replicated", "exists", or "" when no key was asked for
    alias: str  # "created", "exists", or ""

    @property
    def changed(self) -> bool:
        """Whether anything was added in this region."""
        return self.table == "added" or self.key == "replicated" or self.alias == "created"


@dataclass(frozen=True)
class SetupResult:
    """What `setup` had to create."""

    table_created: bool
    key_created: bool
    ttl_enabled: bool = False  # TTL on ExpiresAt was turned on by this setup
    replicas: tuple[RegionSetup, ...] = ()
    streams_enabled: bool = False  # an existing table got the streams global tables need
    region: str = ""  # the home region, where the table and key were looked for

    @property
    def changed(self) -> bool:
        """Whether this setup created or changed anything."""
        return (
            self.table_created
            or self.key_created
            or self.ttl_enabled
            or self.streams_enabled
            or any(r.changed for r in self.replicas)
        )


@dataclass(frozen=True)
class ImportResult:
    """What an import did, or with dry_run would do, per user: create, change or unchanged."""

    actions: dict[str, str]
    # The users whose new version landed (all but the unchanged ones, unless it failed).
    written: tuple[str, ...] = ()

    @property
    def not_written(self) -> tuple[str, ...]:
        """The users that needed a new version and did not get one."""
        done = set(self.written)
        return tuple(u for u, a in self.actions.items() if a != "unchanged" and u not in done)

    def _count(self, action: str) -> int:
        return sum(1 for a in self.actions.values() if a == action)

    @property
    def created(self) -> int:
        """How many users had no secret yet."""
        return self._count("create")

    @property
    def changed(self) -> int:
        """How many users got a new version."""
        return self._count("change")

    @property
    def unchanged(self) -> int:
        """How many users already held the same value, so no version was made."""
        return self._count("unchanged")


@dataclass(frozen=True)
class ReencryptResult:
    """What a re-encryption did, counted in rows; failed names the rows that failed."""

    reencrypted: int
    current: int
    failed: tuple[str, ...]
