"""Run a command we were given (a rotation hook, a template's command) with a deadline.

The command gets its own process group, so a timeout kills it and everything it started. Its
stdout and stderr both go to our stderr (passed through, never buffered here), so a command that
floods its output cannot fill a pipe and hang us, and cannot mix into what we print on stdout
(`cchain --rotate` prints the new version there; the agent, its settings). Input, when given, goes through a pipe: never argv, never
the environment, so a value handed to a hook is not visible in `ps` or /proc/PID/environ.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple


class Finished(NamedTuple):
    """How a command ended: exactly one of status (its exit status), killed_by (the signal
    that ended it, not ours) or timed_out (we killed it at the deadline) says."""

    status: int | None
    killed_by: int | None
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.status == 0

    def describe(self) -> str:
        """One phrase for an error or log line."""
        if self.timed_out:
            return "timed out and was killed"
        if self.killed_by is not None:
            try:
                name = signal.Signals(self.killed_by).name
            except ValueError:
                name = f"signal {self.killed_by}"
            return f"was killed by {name}"
        return f"exited with status {self.status}"


def run_bounded(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: str | None = None,
    cancel: threading.Event | None = None,
) -> Finished:
    """Run argv to completion or until timeout seconds have passed (or cancel is set: the
    agent stopping), then kill its process group and say timed_out. OSError (missing, not
    executable) is the caller's to report."""
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdout=2,  # our stderr: stdout carries our own answer
        start_new_session=True,  # its own group: a timeout kills what it started too
    )
    try:
        if cancel is None:
            process.communicate(input=stdin, timeout=timeout)
        else:
            _communicate_until(process, stdin, timeout, cancel)
    except subprocess.TimeoutExpired:
        kill_group(process)
        return Finished(None, None, True)
    except BaseException:  # Ctrl-C or SIGTERM while it runs: do not leave it behind
        kill_group(process)
        raise
    code = process.returncode
    if code < 0:
        return Finished(None, -code, False)
    return Finished(code, None, False)


def _communicate_until(
    process: subprocess.Popen[bytes], stdin: bytes | None, timeout: float, cancel: threading.Event
) -> None:
    """communicate(), a tenth of a second at a time, raising TimeoutExpired at the deadline
    or as soon as cancel is set."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            process.communicate(
                input=stdin, timeout=max(0.0, min(0.1, deadline - time.monotonic()))
            )
            return
        except subprocess.TimeoutExpired:
            stdin = None  # sent already: communicate() refuses it a second time
            if cancel.is_set() or time.monotonic() >= deadline:
                raise


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process's group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
