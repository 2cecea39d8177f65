"""`cchain -e SERVICE --exec --watch [--on-change ...] -- CMD`: run CMD as a child with the
service's secrets, keep checking for changes, and restart it (or signal it, or exit) when they
change; signals to cchain go on to the child, and cchain exits with the child's status.

Changes are learnt from the agent's /v1/watch when CLOUDCHAIN_AGENT names one (N watchers on
a host cost the agent one check per period), else from a change check every --interval (one
projected Query, no KMS call). A burst of changes (a rotation touching several users) is
acted on once: after a change, cchain waits until the service is quiet for QUIET seconds (at
most SETTLE_MAX), then reads the new values, and restarts only if the environment differs.
"""

from __future__ import annotations

import argparse
import errno
import signal
import threading
from collections.abc import Callable, Mapping
from typing import NamedTuple

from ..durations import format_duration, parse_duration
from ..errors import CloudChainError, ValidationError
from ..supervise import (
    CannotRun,
    Child,
    Event,
    Events,
    exit_status,
    start_child,
    stop,
    terminal_sent,
)
from ..validation import shown
from .io import info, warn
from .secrets import tags_of
from .spec import (
    EXIT_CANNOT_EXECUTE,
    EXIT_COMMAND_NOT_FOUND,
    EXIT_INTERRUPTED,
    Invocation,
    Option,
    Section,
)

# --on-change exit: cchain stops the child and exits with this (EX_TEMPFAIL: run me again).
EXIT_CHANGED = 75
DEFAULT_INTERVAL = 30.0
DEFAULT_GRACE = 10.0
QUIET = 2.0  # a burst is over when no change came for this long
SETTLE_MAX = 10.0  # ... or this long after its first change
AGENT_POLL = 60.0  # one long-poll of the agent, at most
# The longest --interval or --grace: far below what a wait can hold (threading.TIMEOUT_MAX).
MAX_WAIT = 365 * 86_400.0
WATCH_FLAGS = {"--watch": False, "--on-change": True, "--interval": True, "--grace": True}

SECTION = Section(
    "--exec --watch",
    options=(
        Option(("--watch",), "--exec: run CMD as a child and act when the service changes"),
        Option(
            ("--on-change",),
            "--exec --watch: restart (default: SIGTERM, --grace, SIGKILL, start again), "
            "signal:NAME (send it, keep the child) or exit (stop the child, exit 75)",
            {"metavar": "ACTION"},
        ),
        Option(
            ("--interval",),
            "--exec --watch: how often to check for changes without an agent (default 30s)",
            {"metavar": "DURATION"},
        ),
        Option(
            ("--grace",),
            "--exec --watch: how long CMD has after SIGTERM before SIGKILL (default 10s)",
            {"metavar": "DURATION"},
        ),
    ),
)
OPTIONS = tuple(option.dest for option in SECTION.options)


def leading_watch_options(words: list[str]) -> list[str]:
    """The watch flags (and their values) that words begin with: `--exec --watch -- CMD` puts
    them after --exec, and they are cchain's, not the command's."""
    taken: list[str] = []
    at = 0
    while at < len(words):
        flag, equals, _ = words[at].partition("=")
        if flag not in WATCH_FLAGS or (equals and not WATCH_FLAGS[flag]):
            break
        takes_value = WATCH_FLAGS[flag] and not equals
        taken += words[at : at + 1 + takes_value]
        at += 1 + takes_value
    return taken


class Plan(NamedTuple):
    """What --watch asks for, checked before any AWS call."""

    on_change: str  # "restart", "exit" or "signal"
    signal: int
    interval: float
    grace: float


def watch_plan(args: argparse.Namespace) -> Plan | None:
    """The checked watch options; None without --watch (refusing its options then)."""
    if not args.watch:
        given = [f"--{d.replace('_', '-')}" for d in OPTIONS if getattr(args, d, None)]
        if given:
            raise ValidationError(f"{given[0]} goes with --exec --watch")
        return None
    action, _, name = (args.on_change or "restart").partition(":")
    signum = 0
    if action == "signal":
        wanted = name.upper().removeprefix("SIG")
        found = getattr(signal, f"SIG{wanted}", None) if wanted.isalnum() else None
        if not isinstance(found, signal.Signals) or found in (signal.SIGKILL, signal.SIGSTOP):
            raise ValidationError(f"--on-change: {shown(name)!r} is not a signal to send "
                                  "(for example signal:HUP)")  # fmt: skip
        signum = int(found)
    elif action not in ("restart", "exit") or name:
        raise ValidationError(f"--on-change must be restart, exit or signal:NAME, not "
                              f"{shown(args.on_change)!r}")  # fmt: skip
    interval = _wait(args.interval, "--interval") if args.interval else DEFAULT_INTERVAL
    grace = _wait(args.grace, "--grace") if args.grace else DEFAULT_GRACE
    return Plan(action, signum, interval, grace)


def _wait(text: str, flag: str) -> float:
    seconds = parse_duration(text, flag)
    if seconds > MAX_WAIT:
        raise ValidationError(f"{flag}: at most {format_duration(MAX_WAIT)}, not {text!r}")
    return seconds


class Watcher:
    """A thread that learns of changes (through the agent, or by a check each interval),
    settles bursts, and puts one "changed" event per burst on the queue."""

    def __init__(self, inv: Invocation, plan: Plan, events: Events) -> None:
        self._inv, self._plan, self._events = inv, plan, events
        self._service: str = inv.args.service
        self._stop = threading.Event()
        self._failing = False
        # Asked again after a failure: one dropped connection (an agent at its connection cap
        # closes waiting ones first, and anyone on the host can fill it) must not end watching
        # through the agent for the life of the command.
        self._agent = inv.agent
        self._agent_failing = False

    def _agent_token(self, since: str | None, timeout: float) -> str | None:
        """The agent's token (after waiting up to timeout for a change since since); None
        when there is no agent to ask."""
        from ..agent.client import AgentUnavailable

        if self._agent is None:
            return None
        try:
            found = self._agent.watch(self._service, since, timeout)[0]
        except AgentUnavailable as why:
            if not self._agent_failing:
                self._agent_failing = True
                self._events.put(Event("warning", text=f"{why}; checking AWS directly"))
            return None
        if self._agent_failing:
            self._agent_failing = False
            self._events.put(Event("recovered", text="the agent answers again"))
        return found

    def token(self, since: str | None = None, timeout: float = 0.0) -> str:
        """The service's token now (waiting for a change since since, through the agent)."""
        found = self._agent_token(since, timeout)
        if found is not None:
            return found
        if since is not None:
            self._stop.wait(min(timeout, self._plan.interval) if self._agent else timeout)
        return self._inv.chain.change_check(self._service).token

    def _checked(self, since: str | None, timeout: float) -> str | None:
        """token(), with a failing check reported once per outage; None when it failed."""
        try:
            found = self.token(since, timeout)
        except CloudChainError as err:
            if not self._failing:
                self._failing = True
                self._events.put(Event("warning", text=f"cannot check {self._service} for "
                                       f"changes ({err}); keeping the command running"))  # fmt: skip
            return None
        if self._failing:
            self._failing = False
            self._events.put(Event("recovered", text=f"checking {self._service} again"))
        return found

    def start(self, token: str) -> None:
        threading.Thread(target=self._run, args=(token,), name="watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, token: str) -> None:
        while not self._stop.is_set():
            wait = AGENT_POLL if self._agent is not None else self._plan.interval
            found = self._checked(token, wait)
            if found is None or found == token:
                if found is None:
                    self._stop.wait(self._plan.interval)
                continue
            token = self._settle(found)
            if not self._stop.is_set():
                self._events.put(Event("changed"))

    def _settle(self, token: str) -> str:
        """Wait until the service stops changing (QUIET without a change, SETTLE_MAX at most)."""
        import time

        until = time.monotonic() + SETTLE_MAX
        while not self._stop.is_set() and (left := until - time.monotonic()) > 0:
            found = self._checked(token, min(QUIET, left))
            if found is None or found == token:
                return token
            token = found
        return token


def supervise(
    inv: Invocation, plan: Plan, program: str, command: list[str],
    environment: Callable[[], dict[str, str]],
) -> int:  # fmt: skip
    """Run command as a child and watch the service; return cchain's exit status."""
    events = Events()
    watcher = Watcher(inv, plan, events)
    agent = inv.agent

    def read_environment() -> dict[str, str]:
        inv.agent = agent  # a read the agent failed once went to AWS: ask it again
        return environment()

    token = watcher.token()  # before reading: a write after this is seen as a change
    env = read_environment()
    number = 1
    with events.signals():
        try:
            child = start_child(program, command, env, events, number)
            watcher.start(token)
            return _loop(inv, plan, events, child, env, read_environment, program, command)
        except CannotRun as err:
            info(f"error: cannot run {command[0]}: {err.strerror}")
            return EXIT_COMMAND_NOT_FOUND if err.errno == errno.ENOENT else EXIT_CANNOT_EXECUTE
        except BaseException:  # a bug must not leave the command running unsupervised
            for started in events.children:
                started.send(signal.SIGKILL)
            raise
        finally:
            watcher.stop()


def _loop(
    inv: Invocation, plan: Plan, events: Events, child: Child, env: Mapping[str, str],
    environment: Callable[[], dict[str, str]], program: str, command: list[str],
) -> int:  # fmt: skip
    pending: list[Event] = []
    reload_due = False  # a change whose values could not be read yet
    while True:
        event = pending.pop(0) if pending else events.next(plan.interval if reload_due else None)
        if event is None or event.kind == "changed":
            if plan.on_change == "signal":
                child.send(plan.signal)
                continue
            try:
                fresh = environment()
            except CloudChainError as err:
                warn(f"{inv.args.service} changed but cannot be read ({err}); keeping the "
                     "command running with its current values")  # fmt: skip
                reload_due = True
                continue
            reload_due = False
            if fresh == env:
                continue  # a change that leaves the environment as it is (another tag, say)
            if plan.on_change == "exit":
                pending += stop(child, events, plan.grace)
                info(f"{inv.args.service} changed: stopped {command[0]}, exiting "
                     f"{EXIT_CHANGED}")  # fmt: skip
                return EXIT_CHANGED
            pending += stop(child, events, plan.grace)
            info(f"{inv.args.service} changed: restarting {command[0]}")
            env = fresh
            child = start_child(program, command, env, events, child.number + 1)
        elif event.kind == "exited" and event.child == child.number:
            return exit_status(event.value)
        elif event.kind == "signal":
            if event.value in (signal.SIGINT, signal.SIGTERM):
                first = 0 if terminal_sent(event.value) else event.value
                pending += stop(child, events, plan.grace, first or signal.SIGCONT)
                code = child.returncode if child.returncode is not None else 0
                return EXIT_INTERRUPTED if event.value == signal.SIGINT else exit_status(code)
            if not terminal_sent(event.value):
                child.send(event.value)
        elif event.kind == "warning":
            warn(event.text)
        elif event.kind == "recovered":
            info(event.text)


def watch_exec(
    inv: Invocation, plan: Plan, program: str, command: list[str],
    environment: Callable[[], dict[str, str]],
) -> int:  # fmt: skip
    """The hook exec_command calls with --watch."""
    tags_of(inv.args.tag)  # refused before anything runs
    return supervise(inv, plan, program, command, environment)
