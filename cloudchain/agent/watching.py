"""GET /v1/watch?service=S&since=TOKEN&timeout=SECONDS: a long-poll for a change of a service.

Without since, or with a since that is not the service's token now, it answers at once with
the current token; otherwise it answers when the service changes, or after timeout seconds
(default 60, at most MAX_TIMEOUT) with the same token. The body is
{"service": S, "token": T, "changed": true|false}; the token is opaque and holds no secret.

A waiting request costs no thread: it waits on the event loop for the change feed
(changefeed.py), which the one refresh thread publishes to, so N watchers of a service cost
one change check per period, not N. While it waits its connection counts as idle, so at the
connection cap it is the first closed to make room (its client asks again), and a client
that leaves is noticed within a second.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from ..durations import parse_duration
from ..validation import check_service
from .connections import Connection
from .protocol import Closed
from .routes import Answer, Params, Problem

if TYPE_CHECKING:
    from .cached import CachedSecrets

WATCH_PATH = "/v1/watch"
DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 300.0
# How often a waiting request looks whether its client is still there.
POLL_SECONDS = 1.0


def _one(params: Params, name: str) -> str | None:
    values = params.get(name, [])
    if len(values) > 1:
        raise Problem(400, "bad_request", f"{name} is given more than once")
    return values[0] if values else None


def watch_query(params: Params) -> tuple[str, str | None, float]:
    """The service, the token it was seen at (if any) and how long to wait, checked."""
    service = _one(params, "service")
    if service is None:
        raise Problem(400, "bad_request", "the query needs service=")
    since = _one(params, "since")
    if since is not None and not (since.isascii() and since.isalnum() and len(since) <= 128):
        raise Problem(400, "bad_request", "since must be a token this agent gave")
    text = _one(params, "timeout")
    timeout = DEFAULT_TIMEOUT
    if text is not None:
        timeout = parse_duration(text, "timeout", allow_bare_seconds=True)
    return check_service(service), since, min(timeout, MAX_TIMEOUT)


def _answer(service: str, token: str, changed: bool) -> Answer:
    body = {"service": service, "token": token, "changed": changed}
    return Answer(json.dumps(body).encode(), "application/json")


class Watchers:
    """The requests waiting for a change, by service, all on one event loop."""

    def __init__(self, cached: CachedSecrets, pool: Executor) -> None:
        self._cached = cached
        self._pool = pool
        self._waiting: dict[str, set[asyncio.Future[str]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def _listen(self) -> None:
        """Subscribe to the change feed once, from the loop that serves the waiters."""
        if self._loop is None:
            loop = self._loop = asyncio.get_running_loop()

            def changed(service: str, token: str) -> None:  # on the refresh thread
                loop.call_soon_threadsafe(self._wake, service, token)

            self._unsubscribe = self._cached.feed.subscribe(changed)

    def _wake(self, service: str, token: str) -> None:
        for waiter in self._waiting.pop(service, set()):
            if not waiter.done():
                waiter.set_result(token)

    def close(self) -> None:
        """Stop listening to the change feed."""
        if self._unsubscribe is not None:
            self._unsubscribe()

    async def answer(self, params: Params, conn: Connection) -> Answer:
        """Answer one watch request: at once, at a change, or at its timeout."""
        service, since, timeout = watch_query(params)
        self._listen()
        loop = asyncio.get_running_loop()
        token = self._cached.watch(service)  # no AWS call: only what the feed knows
        if token is None:  # first asked: one check, on a thread
            token = await loop.run_in_executor(self._pool, self._cached.first_check, service)
            token = self._cached.feed.token(service) or token
        if since is None or since != token:
            return _answer(service, token, since is not None)
        # Registered with no await since the token was read: a change published after that
        # read is delivered to this waiter.
        waiter: asyncio.Future[str] = loop.create_future()
        self._waiting.setdefault(service, set()).add(waiter)
        deadline = loop.time() + timeout
        conn.idle()  # waiting, not working: closed first when the cap needs room
        try:
            while not waiter.done():
                left = deadline - loop.time()
                if left <= 0:
                    break
                await asyncio.wait([waiter], timeout=min(left, POLL_SECONDS))
                if conn.writer.transport.is_closing() or (
                    conn.reader is not None and conn.reader.at_eof()
                ):
                    raise Closed  # the client left, or was closed to make room
                self._cached.watch(service)  # still wanted: keep it checked
        finally:
            waiting = self._waiting.get(service)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._waiting[service]
            if not waiter.done():
                waiter.cancel()
            conn.busy()
        if waiter.done() and not waiter.cancelled():
            return _answer(service, waiter.result(), True)
        return _answer(service, token, False)

    def waiting(self) -> int:
        """How many requests wait now."""
        return sum(len(waiters) for waiters in self._waiting.values())
