"""Rotation schedules and due dates, worked out from what a listing reads (no KMS, no value).

A secret is due when its current version is as old as its rotation period (RotateEvery), or
when its value's hard expiry (NotAfter) has come; it is soon due when that happens within a
window. The period counts from the current version's SavedAt, so any new current version (a
save, a rollback, an undelete, a rotation) starts it again.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .durations import OFF_WORDS, parse_duration
from .errors import ValidationError
from .summary import RowSummary

DEFAULT_WITHIN = 7 * 86_400.0
# The longest period: a hundred years. A longer one means no schedule (off); one past
# DynamoDB's 38 digits was written, and broke the listings of its service.
MAX_ROTATE_EVERY = 36_500 * 86_400
PERIOD = "period"
NOT_AFTER = "not-after"
# The oldest SavedAt: a current version that records none (saved before versions) is as old
# as can be, so a period set on it makes it due at once.
_DAWN = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Keep(enum.Enum):
    """Leave a schedule setting as it is (None clears it)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True)
class DueSecret:
    """A secret that is due, or soon due, for rotation: never its value."""

    service: str
    user: str
    version: int
    saved_at: str | None  # ISO 8601 UTC of the current version
    due_at: str  # ISO 8601 UTC
    why: str  # "period" (rotate_every) or "not-after"
    due: bool  # True: due now; False: due within the window asked about


def iso(moment: datetime) -> str:
    """Return a UTC time as stored: 2026-12-06T01:52:48Z."""
    # isoformat, not strftime's %Y: a year before 1000 keeps its four digits (ISO 8601).
    return moment.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def parse_time(text: str) -> datetime | None:
    """Return an ISO 8601 date or date-time as an aware UTC datetime (no offset: UTC), or
    None when it is not one."""
    spelled = text.strip()
    if spelled[-1:] in ("Z", "z"):
        spelled = spelled[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(spelled)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # an offset that moves it off the calendar
        return None


def parse_not_after(text: str, name: str = "--not-after") -> str | None:
    """Return a hard expiry as stored (ISO 8601 UTC), or None for `off`; a date alone means
    its midnight UTC. A date in the past is allowed: the secret is simply due."""
    if text.strip().lower() in OFF_WORDS:
        return None
    moment = parse_time(text) if text.strip() else None
    if moment is None:
        raise ValidationError(
            f"{name}: {text!r} is not an ISO 8601 date or date-time (2027-01-31 or "
            "2027-01-31T12:00:00Z), or off"
        )
    return iso(moment)


def parse_rotate_every(text: str, name: str = "--rotate-every") -> int | None:
    """Return a rotation period in whole seconds, or None for `off`."""
    if text.strip().lower() in OFF_WORDS:
        return None
    return check_rotate_every(parse_duration(text, name), name)


def check_rotate_every(seconds: float | None, name: str = "rotate_every") -> int | None:
    """Return a rotation period as stored: whole seconds, at least one (None: no schedule)."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 1:
        raise ValidationError(f"{name} must be at least one second, not {seconds!r}")
    if not math.isfinite(seconds):
        raise ValidationError(f"{name} must be a finite number of seconds")
    if seconds > MAX_ROTATE_EVERY:
        raise ValidationError(f"{name} must be at most 36500d (100 years); off clears it")
    return math.ceil(seconds)


def check_not_after(value: str | datetime | None, name: str = "not_after") -> str | None:
    """Return a hard expiry given to the library (an ISO string or a datetime) as stored."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return iso(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be an ISO 8601 date-time, a datetime or None")
    return parse_not_after(value, name)


def due_at(
    saved_at: str | None, rotate_every: int | None, not_after: str | None
) -> tuple[datetime, str] | None:
    """When a secret falls due and why (the earlier of its period and its expiry), or None
    when it has no schedule. An unreadable stored time counts as due at once."""
    candidates: list[tuple[datetime, str]] = []
    if rotate_every is not None:
        saved = parse_time(saved_at) if saved_at else None
        start = saved or _DAWN
        with contextlib.suppress(OverflowError):  # a period past the calendar: never due by it
            candidates.append((start + timedelta(seconds=rotate_every), PERIOD))
    if not_after is not None:
        candidates.append((parse_time(not_after) or _DAWN, NOT_AFTER))
    return min(candidates, key=lambda c: c[0]) if candidates else None


def due_secrets(
    rows: Iterable[RowSummary], *, within: float = DEFAULT_WITHIN, now: datetime | None = None
) -> list[DueSecret]:
    """Return the rows due now or within `within` seconds, the longest overdue first."""
    now = now or datetime.now(timezone.utc)
    try:
        horizon = now + timedelta(seconds=within)
    except OverflowError:  # a window past the calendar: every scheduled secret
        horizon = datetime.max.replace(tzinfo=timezone.utc)
    found: list[tuple[datetime, DueSecret]] = []
    for row in rows:
        when = due_at(row.saved_at, row.rotate_every, row.not_after)
        if row.deleted or when is None or when[0] > horizon:
            continue
        entry = DueSecret(
            service=row.service,
            user=row.user,
            version=row.version,
            saved_at=row.saved_at,
            due_at=iso(when[0]),
            why=when[1],
            due=when[0] <= now,
        )
        found.append((when[0], entry))
    found.sort(key=lambda pair: (pair[0], pair[1].service, pair[1].user))
    return [entry for _, entry in found]
