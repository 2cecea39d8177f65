"""The one way the agent's parts learn that a service changed: its change feed.

The refresh thread (cached.py) publishes each change check's token after it has applied what
changed to the cache, so a listener that reads the service then gets the new values. A token
is the digest changes.ServiceMarks.token makes: opaque, equal for equal states (across agent
restarts too), and holding no secret.

Two ways to listen:
- subscribe(listener): listener(service, token) is called on the refresh thread after each
  change; it must return quickly (hand the work to a thread or a loop of its own). The watch
  endpoint wakes its asyncio waiters this way (loop.call_soon_threadsafe), and templates can
  set an event of theirs.
- wait(service, since, timeout): block a thread until the token differs from since.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)
Listener = Callable[[str, str], None]


class ChangeFeed:
    """The current token of each checked service, and who to tell when one changes."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}
        self._listeners: list[Listener] = []
        self._changed = threading.Condition()

    def token(self, service: str) -> str | None:
        """The service's token as of its last check, or None when it has not been checked."""
        with self._changed:
            return self._tokens.get(service)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call listener(service, token) after each change; return a function that stops it."""
        with self._changed:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._changed:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def publish(self, service: str, token: str) -> bool:
        """Record a check's token; tell the listeners when it differs from the last one (the
        first check of a service is not a change). Return whether it changed."""
        with self._changed:
            before = self._tokens.get(service)
            self._tokens[service] = token
            changed = before is not None and before != token
            listeners = list(self._listeners) if changed else []
            if changed:
                self._changed.notify_all()
        for listener in listeners:
            try:
                listener(service, token)
            except Exception:  # one broken listener must not stop the refresh or the others
                log.warning("a change listener failed for service %s", service, exc_info=True)
        return changed

    def forget(self, service: str) -> None:
        """Drop a service's token (it is no longer checked); its next check starts afresh."""
        with self._changed:
            self._tokens.pop(service, None)

    def wait(self, service: str, since: str | None, timeout: float) -> str | None:
        """Block until service's token differs from since, or timeout seconds; return the
        token then (None if the service was never checked)."""
        with self._changed:
            self._changed.wait_for(lambda: self._tokens.get(service) != since, timeout)
            return self._tokens.get(service)
