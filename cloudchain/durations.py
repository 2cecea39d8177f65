"""Durations as people write them (`30d`, `12h`, `1w`, `90s`, `2s:10s`), parsed once for every
flag and setting that takes one: rotation periods, intervals, timeouts, grace and wait times.

No AWS, no imports beyond the standard library: the agent fast path and the parser use it.
"""

from __future__ import annotations

import re

from .errors import ValidationError

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
# Off means "no schedule"; spelled several ways because people do.
OFF_WORDS = frozenset({"off", "none", "never"})


class DurationError(ValidationError):
    """A duration could not be read; the message names the flag or setting."""


def parse_duration(text: str, name: str, *, allow_bare_seconds: bool = False) -> float:
    """Return the seconds that `text` stands for: a positive number followed by one unit
    (ms, s, m, h, d, w). A bare number is seconds only when allow_bare_seconds (flags that
    used to take plain seconds). Zero and negative durations are refused: none of our uses
    means anything by them. `name` is the flag or setting, for the one-line error."""
    spelled = text.strip().lower()
    match = _DURATION.fullmatch(spelled)
    if match is not None:
        seconds = float(match.group(1)) * UNITS[match.group(2)]
    elif allow_bare_seconds and re.fullmatch(r"\d+(?:\.\d+)?", spelled):
        seconds = float(spelled)
    else:
        raise DurationError(
            f"{name}: {text!r} is not a duration (a number and a unit: ms, s, m, h, d or w, "
            "for example 30s, 12h, 90d, 1w)"
        )
    if seconds <= 0:
        raise DurationError(f"{name}: a duration must be more than zero, not {text!r}")
    return seconds


def parse_optional_duration(text: str, name: str) -> float | None:
    """parse_duration, or None for `off` (clear a schedule)."""
    if text.strip().lower() in OFF_WORDS:
        return None
    return parse_duration(text, name)


def parse_window(text: str, name: str) -> tuple[float, float]:
    """A `min[:max]` pair such as `2s:10s`; max defaults to four times min and may not be
    less than it."""
    low_text, _, high_text = text.partition(":")
    low = parse_duration(low_text, name)
    high = parse_duration(high_text, name) if high_text else max(low * 4, low)
    if high < low:
        raise DurationError(f"{name}: the maximum {high_text!r} is less than the minimum")
    return low, high


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of `seconds` in the largest whole unit (`30d`, `90s`)."""
    for unit in ("w", "d", "h", "m", "s"):
        size = UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
