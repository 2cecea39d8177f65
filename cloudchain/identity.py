"""Who is writing: the caller's ARN from STS GetCallerIdentity, asked once and kept.

Every new version records it as SavedBy. Asking STS must never make a save fail or wait long:
the question goes out in the background when a write starts, with short timeouts and one
retry, and an STS that fails, refuses or does not answer makes the answer "unknown".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
UNKNOWN = "unknown"
# How long a write waits for the answer before recording "unknown".
WAIT = 10.0


class CallerIdentity:
    """The caller's ARN for one CloudChain: asked at most once, in the background."""

    def __init__(self, sts: Callable[[], Any]) -> None:
        self._sts = sts
        self._arn: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def prefetch(self) -> None:
        """Start asking STS, unless it was asked already."""
        with self._lock:
            if self._thread is None and self._arn is None:
                self._thread = threading.Thread(
                    target=self._ask, name="cloudchain-sts", daemon=True
                )
                self._thread.start()

    def _ask(self) -> None:
        try:
            arn = str(self._sts().get_caller_identity()["Arn"])
        except Exception as err:  # any failure: the save goes on without a name
            log.debug(
                "STS GetCallerIdentity failed (%s); recording %s", type(err).__name__, UNKNOWN
            )
            arn = UNKNOWN
        self._arn = arn

    def arn(self) -> str:
        """The caller's ARN, or "unknown"."""
        self.prefetch()
        thread = self._thread
        if thread is not None:
            thread.join(WAIT)
        return self._arn or UNKNOWN
