"""What a listing reads of a row: a projection with no ciphertext and no history, so
--list, completion and the like never fetch a secret or decode a version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .layout import (
    ACTION,
    BINARY,
    CONTEXT,
    DELETE,
    EXPIRES_AT,
    NOT_AFTER,
    ROTATE_EVERY,
    SAVED_AT,
    SAVED_BY,
    SERVICE,
    TAGS,
    USERNAME,
    VERSION,
    string_of,
)


@dataclass(frozen=True)
class RowSummary:
    """What a listing reads of a row: no ciphertext, no history."""

    service: str
    user: str
    legacy: bool
    deleted: bool
    saved_at: str | None
    saved_by: str | None
    expires_at: int | None
    tags: dict[str, str]
    version: int = 1  # the current version (a row written before versions: 1)
    rotate_every: int | None = None  # seconds
    not_after: str | None = None  # the current value's hard expiry, ISO 8601 UTC


SUMMARY_ATTRIBUTES = (
    SERVICE,
    USERNAME,
    CONTEXT,
    VERSION,
    BINARY,
    ACTION,
    SAVED_AT,
    SAVED_BY,
    EXPIRES_AT,
    ROTATE_EVERY,
    NOT_AFTER,
)


def _whole(item: dict[str, Any], name: str) -> int | None:
    text = item.get(name, {}).get("N")
    return int(text) if isinstance(text, str) and text.isdigit() else None


def summary_of(item: dict[str, Any]) -> RowSummary:
    context = (string_of(item, CONTEXT) or "").split(",")
    binary = bool(item.get(BINARY, {}).get("BOOL", False))
    expires = item.get(EXPIRES_AT, {}).get("N")
    deleted = string_of(item, ACTION) == DELETE
    return RowSummary(
        service=item[SERVICE]["S"],
        user=item[USERNAME]["S"],
        # A display hint; reads decide from the whole item (see decode). A delete's record holds
        # no ciphertext, so no context either: that is not a legacy row.
        legacy=not deleted and (context == [""] or (binary and BINARY not in context)),
        deleted=deleted,
        saved_at=string_of(item, SAVED_AT),
        saved_by=string_of(item, SAVED_BY),
        expires_at=int(expires) if expires and expires.isdigit() else None,
        tags={k: v.get("S", "") for k, v in item.get(TAGS, {}).get("M", {}).items()},
        version=_whole(item, VERSION) or 1,
        rotate_every=_whole(item, ROTATE_EVERY),
        not_after=string_of(item, NOT_AFTER),
    )
