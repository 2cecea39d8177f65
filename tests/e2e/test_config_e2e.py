"""Settings against the emulator, through the installed cchain: a region that is not one is
refused before any request, not retried."""

from __future__ import annotations

import time

import pytest
from support import Emulator

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "env",
    [
        {"CLOUDCHAIN_REGION": "moon-1"},
        {"CLOUDCHAIN_REGION": "us-moon-1"},
        {"AWS_DEFAULT_REGION": "us east"},
        {"CLOUDCHAIN_REPLICA_REGIONS": "us-west-2 us-moon-1"},
    ],
)
def test_a_region_that_is_not_one_is_refused_before_any_request(
    emulator: Emulator, env: dict[str, str]
) -> None:
    started = time.monotonic()
    result = emulator.run("--list", env=env)
    assert result.code == 2, result.err
    assert result.err.startswith("cchain: error: invalid ")
    assert "region" in result.err.splitlines()[0]
    assert "environment variable" in result.err.splitlines()[0]
    assert "Traceback" not in result.err
    assert time.monotonic() - started < 5  # not five retries of a 500
