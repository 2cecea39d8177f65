"""A cap on open connections, below the process's open-file limit.

At the cap, a new connection makes room by closing the connection that has been idle the
longest (waiting for a request); if every connection is busy, the new one is closed. So a
flood of idle connections costs the flooder its own connections, not the agent its file
descriptors, and real readers keep getting in. An overload is logged once when it starts and
once when it ends, never once per connection.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import TYPE_CHECKING

from ..errors import ValidationError

if TYPE_CHECKING:
    from .access import Client

log = logging.getLogger("cloudchain.agent")
BACKLOG = 256  # a burst of clients queues at connect instead of being refused
# Descriptors kept back from the cap: asyncio accepts up to a backlog's worth of connections
# before any of them is admitted, and the listening socket, logs and AWS connections need some.
RESERVE = BACKLOG + 64
DEFAULT_CAP = 1024


def file_limit() -> int:
    """The process's soft limit on open files."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(asked: int | None) -> int:
    """The cap to use: the one asked for, or the default, below the open-file limit."""
    limit = file_limit()
    room = limit - RESERVE if limit != resource.RLIM_INFINITY else DEFAULT_CAP * 64
    if asked is None:
        return max(1, min(DEFAULT_CAP, room))
    if asked < 1:
        raise ValidationError("--max-connections must be at least 1")
    if asked > room:
        raise ValidationError(
            f"--max-connections {asked} is more than the open-file limit ({limit}) leaves "
            f"room for; at most {max(room, 0)}, or raise the limit (ulimit -n)"
        )
    return asked


class Connection:
    """One client connection, and whether it is waiting for a request."""

    __slots__ = ("challenge", "challenge_until", "client", "idle_since", "reader", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.reader: asyncio.StreamReader | None = None  # set by the server: a long-poll
        # looks at it to notice a client that left
        self.idle_since: float | None = time.monotonic()
        self.challenge: str | None = None  # issued on this connection, good for one request
        self.challenge_until = 0.0
        self.client: Client | None = None  # with an access file: who the peer is (access.py)

    def busy(self) -> None:
        self.idle_since = None

    def idle(self) -> None:
        self.idle_since = time.monotonic()


class Connections:
    """The open connections, at most cap of them."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: set[Connection] = set()
        self._overloaded = False

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, writer: asyncio.StreamWriter) -> Connection | None:
        """Register a new connection, closing the longest idle one to make room; None when
        there is no room (the caller closes it)."""
        if len(self._open) >= self.cap:
            if not self._overloaded:
                self._overloaded = True
                log.warning("%d connections open, the cap: closing idle ones to make room "
                            "(--max-connections)", self.cap)  # fmt: skip
            idle = [c for c in self._open if c.idle_since is not None]
            if not idle:
                return None
            oldest = min(idle, key=lambda c: c.idle_since or 0.0)
            self._open.discard(oldest)
            oldest.writer.transport.abort()
        connection = Connection(writer)
        self._open.add(connection)
        return connection

    def release(self, connection: Connection) -> None:
        """Forget a closed connection; say so once an overload is over."""
        self._open.discard(connection)
        if self._overloaded and len(self._open) < self.cap * 0.9:
            self._overloaded = False
            log.warning("back under the connection cap: %d open", len(self._open))
