"""Run AWS calls with errors translated, giving a still-throttled call more rounds."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from .clients import Clients
from .errors import CloudChainError, ThrottledError, translate

T = TypeVar("T")
# Rounds of botocore's own attempts a still-throttled call gets.
THROTTLE_ROUNDS = 3
THROTTLE_BASE = 0.5


class AwsCalls:
    """Runs calls against one table, translating errors into the CloudChainError tree."""

    def __init__(self, tablename: str, clients: Clients, *, place: str | None = None) -> None:
        self.tablename = tablename
        # What messages name as where the call went (an import's source is no table of ours).
        self.place = place or f"table '{tablename}'"
        self._clients = clients  # asked where the calls went only to explain a failure

    def __call__(self, doing: str, call: Callable[[], T]) -> T:
        """Run call, translating AWS errors; give a still-throttled call more rounds.

        botocore already retried each request max_attempts times. Throttling is AWS asking
        for patience rather than a failure, and one throttled secret would fail a whole
        export, so a call that is still throttled gets THROTTLE_ROUNDS rounds in all, with
        full-jitter backoff. Every call here is safe to repeat: a throttled request did
        nothing, and writes are conditional.
        """
        for attempt in range(THROTTLE_ROUNDS):
            try:
                return self._translated(f"{doing} {self.place}", call)
            except ThrottledError:
                if attempt == THROTTLE_ROUNDS - 1:
                    raise
                time.sleep(random.uniform(0, THROTTLE_BASE * 2**attempt))
        raise AssertionError("unreachable")

    def _translated(self, doing: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except CloudChainError:
            raise
        except Exception as err:
            translated = translate(err, doing, *self._where())
            if translated is None:
                raise
            raise translated from err

    def _where(self) -> tuple[str | None, str]:
        """The DynamoDB endpoint and the region the calls went to."""
        try:
            region = self._clients.region
        except Exception:
            # Explaining a failure must not fail in turn: a broken profile breaks this too.
            region = "?"
        return self._clients.endpoint_for("dynamodb", region), region
