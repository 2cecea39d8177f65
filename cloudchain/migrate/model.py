"""What every source yields: secrets, each with its versions oldest first, whose values are
read only when asked for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import CloudChainError

Value = str | bytes


class SkippedVersion(CloudChainError):
    """A source version that cannot be imported as it is (a credstash row whose HMAC does not
    verify, an empty value): reported and left out, never written."""


@dataclass(frozen=True)
class SourceVersion:
    """One version of a source secret; read() fetches and decrypts its value."""

    version_id: str
    read: Callable[[], Value] = field(repr=False, compare=False)
    time: str | None = None  # ISO 8601 UTC, when the source records one
    size: int | None = None  # bytes as stored at the source, when known without decrypting
    pending: bool = False  # Secrets Manager's AWSPENDING: a staged version, not a current one


@dataclass(frozen=True)
class SourceSecret:
    """One secret of a source: its name there and its versions, oldest first."""

    source: str  # `credstash:TABLE`, `ssm`, `secretsmanager`
    name: str
    versions: tuple[SourceVersion, ...]
    key: str | None = None  # --expand-json: the key of the JSON object this secret is

    @property
    def mapped_name(self) -> str:
        """The name that is mapped to a row: an expanded key is one more path segment."""
        return self.name if self.key is None else f"{self.name}/{self.key}"

    @property
    def origin(self) -> str:
        """The Source attribute of each version imported from it."""
        where = f"{self.source}:{self.name}"
        return where if self.key is None else f"{where}#{self.key}"
