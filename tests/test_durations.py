"""Durations: one parser for every flag and setting that takes one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudchain.durations import (
    DurationError,
    format_duration,
    parse_duration,
    parse_optional_duration,
    parse_window,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86400),
        ("12h", 43200),
        ("1w", 604800),
        ("90s", 90),
        ("500ms", 0.5),
        ("2m", 120),
        (" 7D ", 7 * 86400),
        ("1.5h", 5400),
    ],
)
def test_parses_each_unit(text: str, seconds: float) -> None:
    assert parse_duration(text, "--x") == seconds


@pytest.mark.parametrize("text", ["0d", "-1d", "1x", "", "d", "30", "1d2h", "1e3s", "inf"])
def test_refuses_what_is_not_a_positive_duration(text: str) -> None:
    with pytest.raises(DurationError, match=r"^--rotate-every: "):
        parse_duration(text, "--rotate-every")


def test_bare_seconds_only_where_allowed() -> None:
    assert parse_duration("30", "--ttl", allow_bare_seconds=True) == 30
    with pytest.raises(DurationError):
        parse_duration("0", "--ttl", allow_bare_seconds=True)


def test_off_clears() -> None:
    assert parse_optional_duration("off", "--rotate-every") is None
    assert parse_optional_duration("1w", "--rotate-every") == 604800


def test_window() -> None:
    assert parse_window("2s:10s", "wait") == (2, 10)
    assert parse_window("2s", "wait") == (2, 8)
    with pytest.raises(DurationError, match="less than"):
        parse_window("10s:2s", "wait")


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_format_round_trips(count: int, unit: str) -> None:
    seconds = parse_duration(f"{count}{unit}", "--x")
    assert parse_duration(format_duration(seconds), "--x") == seconds
