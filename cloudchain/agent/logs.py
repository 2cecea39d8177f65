"""What the agent logs, and how much: one escaped line a request, never a secret, and never
more than a flood's worth.

- Every line is printable: a control character in a request path or a stored name is written
  as an escape (validation.shown), so a request cannot forge lines or drive a terminal.
- Request lines are at most LINES_PER_SECOND; past that they are counted, and one line says
  how many were left out. Health checks and challenges that succeed are not logged at all.
- The event loop's own errors (accept failing for want of file descriptors...) are one line
  each, without a traceback, at most once a second for each kind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..validation import shown

log = logging.getLogger("cloudchain.agent")
LINES_PER_SECOND = 50
QUIET_PATHS = frozenset({"/healthz", "/v1/challenge"})


class Escaped(logging.Formatter):
    """Every log line on one line of printable text."""

    def format(self, record: logging.LogRecord) -> str:
        return shown(super().format(record))


class RequestLog:
    """One line a request, bounded."""

    def __init__(self, per_second: int = LINES_PER_SECOND) -> None:
        self.per_second = per_second
        self._second = 0
        self._lines = 0
        self._left_out = 0

    def request(
        self, method: str, path: str, status: int, took_ms: float, client: str | None = None
    ) -> None:
        if status == 200 and path in QUIET_PATHS:
            return
        second = int(time.monotonic())
        if second != self._second:
            if self._left_out:
                log.warning("%d request lines left out (more than %d a second)",
                            self._left_out, self.per_second)  # fmt: skip
            self._second, self._lines, self._left_out = second, 0, 0
        if self._lines >= self.per_second:
            self._left_out += 1
            return
        self._lines += 1
        if client is None:
            log.info("%s %s %d %.1f ms", method, path, status, took_ms)
        else:  # the access file's name for the client, never its token
            log.info("%s %s %d %.1f ms client=%s", method, path, status, took_ms, client)


_quiet_until: dict[str, float] = {}


def quiet_exceptions(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: one line, no traceback, at most once a second a kind."""
    message = str(context.get("message", "error"))
    now = time.monotonic()
    if now < _quiet_until.get(message, 0.0):
        return
    _quiet_until[message] = now + 1.0
    err = context.get("exception")
    log.warning("%s%s", message, f": {err}" if err else "")
