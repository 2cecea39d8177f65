"""Named counts that many threads add to: the cache's hits and misses, the agent's refreshes
and AWS errors, the regions' failovers. Read as attributes (`stats.hits`)."""

from __future__ import annotations

import threading


class Tally:
    """A fixed set of named counters behind one lock."""

    def __init__(self, *names: str) -> None:
        self._counts = dict.fromkeys(names, 0)
        self._lock = threading.Lock()

    def add(self, name: str, amount: int = 1) -> None:
        """Add to one counter (a name it was not made with is a KeyError: a typo, not a count)."""
        with self._lock:
            self._counts[name] += amount

    def __getattr__(self, name: str) -> int:
        try:
            return self.__dict__["_counts"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        with self._lock:
            counts = ", ".join(f"{name}={count}" for name, count in self._counts.items())
        return f"Tally({counts})"
