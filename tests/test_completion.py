"""Completing -e and -u reads the table with one bound for the whole completion, however many
regions it would fail over to."""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Iterator

import pytest

from cloudchain.commands.doctor import complete_services, complete_users

COMPLETION_SECONDS = 2.0  # docs/setup.md


@pytest.fixture
def hung() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _typed(endpoint: str, **more: object) -> argparse.Namespace:
    flags = dict.fromkeys(("config", "region", "kms_endpoint_url", "table", "key_alias",
                           "profile", "history_size", "max_workers", "connect_timeout",
                           "read_timeout", "max_attempts", "allow_legacy", "recovery_days",
                           "failover_cooldown"))  # fmt: skip
    return argparse.Namespace(
        **{**flags, "endpoint_url": endpoint, "replica_region": ["us-west-2", "eu-west-1"]},
        **more,
    )


@pytest.mark.parametrize("complete", [complete_services, complete_users])
def test_completion_with_replicas_against_a_hung_endpoint_is_bound_as_a_whole(
    hung: str, complete: object
) -> None:
    started = time.monotonic()
    assert complete("", _typed(hung, service="billing")) == []  # type: ignore[operator]
    assert time.monotonic() - started < COMPLETION_SECONDS + 0.5
