"""Supervising one child process for `cchain --exec --watch`: start it, forward signals to it,
stop it (SIGTERM, a grace period, then SIGKILL), and turn how it ended into an exit status.

Everything that happens (a signal to us, the child's exit, a change, a warning) is an Event
on one queue that the main thread reads: signal handlers only put on the queue (which
SimpleQueue allows), and one thread per child waits for it. Nothing here prints or knows
about argv; commands/watch.py decides what each event means.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import NamedTuple

# Signals sent to cchain that go on to the child.
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


class Event(NamedTuple):
    """One thing that happened: kind is "signal" (value: the number), "exited" (value: the
    status; child: which child), "changed", "warning" or "recovered" (text: what)."""

    kind: str
    value: int = 0
    child: int = 0
    text: str = ""


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: its exit code, or 128+N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


class Child:
    """One run of the command, with a thread that reports its end as an Event."""

    def __init__(
        self,
        program: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        events: queue.SimpleQueue[Event],
        number: int,
    ) -> None:
        self.number = number
        self.process = subprocess.Popen(list(argv), executable=program, env=dict(env))
        self.returncode: int | None = None
        self._events = events
        threading.Thread(target=self._wait, name=f"child-{number}", daemon=True).start()

    def _wait(self) -> None:
        code = self.process.wait()
        self._events.put(Event("exited", code, self.number))

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, signum: int) -> None:
        """Send a signal, unless the child has already ended."""
        if self.process.returncode is None:
            with suppress(ProcessLookupError):
                self.process.send_signal(signum)


class Events:
    """The queue the main thread reads, and signal handlers that feed it."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.children: list[Child] = []  # every child started, for the caller to clean up

    def put(self, event: Event) -> None:
        self.queue.put(event)

    def next(self, timeout: float | None) -> Event | None:
        """The next event, or None after timeout seconds."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    @contextmanager
    def signals(self) -> Iterator[None]:
        """Turn the forwarded signals into events while inside; restore the handlers after."""

        def handler(signum: int, frame: object) -> None:
            self.queue.put(Event("signal", signum))

        before = {signum: signal.signal(signum, handler) for signum in FORWARDED}
        try:
            yield
        finally:
            for signum, old in before.items():
                signal.signal(signum, old)


class CannotRun(OSError):
    """The command could not be started (as execve fails for --exec without --watch)."""


def start_child(
    program: str, argv: Sequence[str], env: Mapping[str, str], events: Events, number: int
) -> Child:
    """Start a child, noted in events.children; CannotRun when it cannot be started."""
    try:
        child = Child(program, argv, env, events.queue, number)
    except OSError as err:
        raise CannotRun(err.errno, err.strerror) from None
    events.children.append(child)
    return child


def terminal_sent(signum: int) -> bool:
    """Whether a SIGINT or SIGQUIT most likely came from our terminal's keyboard: we are in
    its foreground process group, and so is the child (it shares ours), which got it too."""
    if signum not in (signal.SIGINT, signal.SIGQUIT):
        return False
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def stop(child: Child, events: Events, grace: float, first: int = signal.SIGTERM) -> list[Event]:
    """Stop a child: first (SIGTERM), then SIGKILL after grace seconds. Return the events
    that came meanwhile (signals, changes), for the caller to handle after; the child's
    returncode is set."""
    child.send(first)
    deadline = time.monotonic() + grace
    killed = False
    held: list[Event] = []
    while True:
        left = deadline - time.monotonic()
        event = events.next(max(left, 0.0) if not killed else None)
        if event is None:
            if not killed:
                child.send(signal.SIGKILL)
                killed = True
            continue
        if event.kind == "exited" and event.child == child.number:
            child.returncode = event.value
            return held
        held.append(event)
