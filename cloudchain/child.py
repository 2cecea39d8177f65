"""Run a command as our child until it exits, passing on the signals meant for it, for the
cases where cchain cannot simply become the command (it has files to remove afterwards).

The child stays in our process group, so a Ctrl-C at a terminal reaches it directly, as it would
without cchain; the signals sent to cchain itself (`docker stop`, `kill`, an orchestrator) are
passed on. Our signals are blocked and taken with sigtimedwait, which says who sent each: a
signal from the kernel (the terminal) is not passed on again, one from a process is. As PID 1
in a container, cchain also reaps the orphans that are handed to it. (--exec --watch has its
own supervisor, supervise.py, which restarts its child; the signals and exit codes are shared.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence

from .supervise import FORWARDED, exit_status

# Python ignores these itself; the command gets them back at their default, as subprocess does.
_RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)
# How long to wait for a signal before looking at the child again (a missed SIGCHLD costs this).
_POLL_SECONDS = 1.0


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


@contextlib.contextmanager
def _fallback_handlers(pid: list[int]) -> Iterator[None]:
    """While the child runs, a forwarded signal that reaches another thread (where it is not
    blocked) is passed on by a handler instead of stopping us; the handlers are put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(received: int, frame: object) -> None:
        if pid:
            _forward(pid[0], received)

    previous = {signum: signal.getsignal(signum) for signum in FORWARDED}
    for signum in FORWARDED:
        if previous[signum] is not signal.SIG_IGN:
            signal.signal(signum, forward)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _reap(pid: int) -> int | None:
    """The child's wait status once it has exited, else None; as PID 1, reap orphans too."""
    done, status = os.waitpid(pid, os.WNOHANG)
    result = status if done == pid else None
    if os.getpid() == 1:  # orphans are re-parented to us: leave no zombie behind
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
    return result


def run_child(program: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run program with argv and env until it exits; return its exit code (128 + N if signal N
    ended it). Failing to start it raises OSError (ENOENT, EACCES, E2BIG) for the caller."""
    watched = {*FORWARDED, signal.SIGCHLD}
    spawned: list[int] = []
    with _fallback_handlers(spawned):
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        try:
            # The child starts with the mask we had before blocking, and SIGPIPE restored.
            spawned.append(
                os.posix_spawn(program, list(argv), dict(env), setsigmask=mask, setsigdef=_RESTORED)
            )
            pid = spawned[0]
            while True:
                received = signal.sigtimedwait(watched, _POLL_SECONDS)
                # si_code > 0: sent by the kernel, as a terminal's Ctrl-C is to the whole
                # foreground group, child included; passing it on would deliver it twice.
                if received and received.si_signo in FORWARDED and received.si_code <= 0:
                    _forward(pid, received.si_signo)
                status = _reap(pid)
                if status is not None:
                    return exit_status(os.waitstatus_to_exitcode(status))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
