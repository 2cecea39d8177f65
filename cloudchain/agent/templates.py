"""The agent's templates: rendered like `cchain --render` (render.py: the same sandbox, functions
and limits), written atomically only when their bytes differ (template_files.py), and followed
by their command (process.py's run_bounded) only then.

Each template has a thread of its own, so a slow render or a hanging command holds up neither
the event loop that serves requests nor another template. A template renders at start, at
every refresh period (jittered by 10 %: the retry of a failed render), and when the agent's
change feed (changefeed.py) says a service it reads changed, once the changes have been quiet
for its wait's minimum (or, in a stream of changes, once its maximum has passed since the
first). A render that fails leaves the last good file as it is, logs one line that names no
value, and is tried again at the next period.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import CloudChainError, SecretNotFoundError, ValidationError
from ..process import run_bounded
from ..results import Secret, Versioned
from ..tally import Tally
from .cached import MIN_PERIOD
from .template_config import TemplateSpec
from .template_files import Written, write_if_changed

if TYPE_CHECKING:
    from ..chain import CloudChain
    from ..config import Config
    from .cached import CachedSecrets

log = logging.getLogger("cloudchain.agent")
COUNTS = ("renders", "skipped", "render_errors", "commands", "command_failures")
DESTINATION_ENV = "CLOUDCHAIN_TEMPLATE_DESTINATION"
NAME_ENV = "CLOUDCHAIN_TEMPLATE_NAME"
# How long a stopping agent waits for renders in progress (each bounded by its render limits).
STOP_WAIT = 10.0


class Reader:
    """What a template reads through (render.SecretReader): the agent's cache, or the table
    directly for --once; with error_on_missing off, a missing secret reads as empty text."""

    def __init__(
        self,
        config: Config,
        secret: Callable[[str, str, int | None], Versioned],
        service: Callable[[str], dict[str, Versioned]],
        error_on_missing: bool,
    ) -> None:
        self._config, self._secret, self._service = config, secret, service
        self._error_on_missing = error_on_missing

    @classmethod
    def cached(cls, cached: CachedSecrets, error_on_missing: bool) -> Reader:
        return cls(cached.chain.config, cached.secret, cached.service, error_on_missing)

    @classmethod
    def direct(cls, chain: CloudChain, error_on_missing: bool) -> Reader:
        return cls(chain.config, chain.read_versioned, chain.export_versioned, error_on_missing)

    @property
    def config(self) -> Config:
        return self._config

    def read(self, service: str, user: str, version: int | None = None) -> Secret:
        try:
            return self._secret(service, user, version).value
        except SecretNotFoundError:
            if self._error_on_missing:
                raise
            return ""

    def export(self, service: str) -> dict[str, Secret]:
        return {user: found.value for user, found in self._service(service).items()}


class Template:
    """One template: render it, write it if it changed, run its command, and count."""

    def __init__(
        self, spec: TemplateSpec, reader: Reader, stopping: threading.Event | None = None
    ) -> None:
        self.spec, self.reader = spec, reader
        self.stopping = stopping or threading.Event()  # set: no command starts, a running one ends
        self.counts = Tally(*COUNTS)
        self._last_error: str | None = None

    def render(self) -> bool:
        """Render and write once; False when the render, the write or the command failed."""
        from ..render import render

        spec = self.spec
        try:
            data = render(self.reader, spec.text, spec.name).encode("utf-8")
            if self.stopping.is_set():  # not written: the next start writes it and runs the command
                return True
            written = write_if_changed(spec.destination, data, spec.mode, spec.directory)
        except CloudChainError as err:  # one line, as `cchain --render` says it: never a value
            return self._failed(str(err))
        except OSError as err:
            return self._failed(f"cannot write {spec.destination}: {err.strerror or err}")
        if self._last_error is not None:
            log.warning("template %s: rendered again", spec.name)
            self._last_error = None
        if written is not Written.REPLACED:
            self.counts.add("skipped")
            log.debug("template %s: %s unchanged", spec.name, spec.destination)
            return True
        self.counts.add("renders")
        log.info("template %s: wrote %s", spec.name, spec.destination)
        return self._command()

    def _failed(self, reason: str) -> bool:
        self.counts.add("render_errors")
        # Said once while it fails the same way (it is tried again at every check), and again
        # when the reason changes.
        say = log.debug if reason == self._last_error else log.warning
        say("template %s: not rendered, %s kept as it was: %s",
            self.spec.name, self.spec.destination, reason)  # fmt: skip
        self._last_error = reason
        return False

    def _command(self) -> bool:
        spec = self.spec
        if not spec.command or self.stopping.is_set():
            return True
        self.counts.add("commands")
        env = {**os.environ, DESTINATION_ENV: str(spec.destination), NAME_ENV: spec.name}
        try:
            finished = run_bounded(
                spec.command, timeout=spec.command_timeout, env=env, cancel=self.stopping
            )
        except OSError as err:
            self.counts.add("command_failures")
            log.warning("template %s: command cannot run: %s", spec.name, err.strerror or err)
            return False
        if finished.ok:
            log.info("template %s: command exited with status 0", spec.name)
            return True
        if finished.timed_out and self.stopping.is_set():
            log.warning("template %s: command killed: the agent is stopping", spec.name)
            return False
        self.counts.add("command_failures")
        log.warning("template %s: command %s", spec.name, finished.describe()
                    + (f" after {spec.command_timeout:g} s" if finished.timed_out else ""))  # fmt: skip
        return False


class _Loop:
    """A template's thread: when to render next (a check, or a change quiet for long enough)."""

    def __init__(self, template: Template, period: float, stop: threading.Event) -> None:
        self.template, self.period, self.stop = template, period, stop
        self.woken = threading.Condition()
        self.first: float | None = None  # the first and last change not yet rendered
        self.last: float | None = None

    def changed(self) -> None:
        with self.woken:
            now = time.monotonic()
            self.first = now if self.first is None else self.first
            self.last = now
            self.woken.notify()

    def wake(self) -> None:
        with self.woken:
            self.woken.notify()

    def run(self) -> None:
        check = time.monotonic()  # render at start
        low, high = self.template.spec.wait
        while True:
            with self.woken:
                while not self.stop.is_set():
                    due = check
                    if self.first is not None and self.last is not None:
                        due = min(due, self.last + low, self.first + high)
                    now = time.monotonic()
                    if now >= due:
                        break
                    self.woken.wait(due - now)
                if self.stop.is_set():
                    return
                self.first = self.last = None
                check = now + self.period * random.uniform(0.9, 1.1)
            try:
                self.template.render()
            except Exception as err:  # a bug must cost this render, not the template's thread
                self.template.counts.add("render_errors")
                log.warning("template %s: not rendered, on an unexpected %s",
                            self.template.spec.name, type(err).__name__)  # fmt: skip


class Templates:
    """Every template of an agent, each kept rendered by a thread of its own."""

    def __init__(self, specs: Sequence[TemplateSpec], cached: CachedSecrets) -> None:
        period = max(cached.cache.ttl / 2, MIN_PERIOD)  # the refresh period: the retry
        self._stop = threading.Event()
        self.templates = [
            Template(spec, Reader.cached(cached, spec.error_on_missing), self._stop)
            for spec in specs
        ]
        self._loops = [_Loop(template, period, self._stop) for template in self.templates]
        cached.feed.subscribe(lambda service, _token: self.changed(service))  # a change seen
        self._threads: list[threading.Thread] = []

    def changed(self, service: str) -> None:
        """A service changed: render the templates that read it, after their wait."""
        for loop in self._loops:
            if service in loop.template.spec.services:
                loop.changed()

    def start(self) -> None:
        for loop in self._loops:
            thread = threading.Thread(target=loop.run, name=f"template {loop.template.spec.name}",
                                      daemon=True)  # fmt: skip
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop rendering: a write in progress completes (a file is the old one or the new
        one, never part of one), and a command in progress is killed with its group."""
        self._stop.set()
        for loop in self._loops:
            loop.wake()
        deadline = time.monotonic() + STOP_WAIT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def collect(self) -> Iterator[Any]:
        """The templates' counts, for /metrics (a Prometheus collector's collect)."""
        from prometheus_client.core import CounterMetricFamily

        for count, text in (
            ("renders", "templates rendered and written (their bytes changed)"),
            ("skipped", "templates rendered to the bytes already there: not written"),
            ("render_errors", "template renders or writes that failed: the last file kept"),
            ("commands", "template commands run"),
            ("command_failures", "template commands that failed, timed out or could not run"),
        ):
            family = CounterMetricFamily(f"cloudchain_agent_template_{count}", text,
                                         labels=["template"])  # fmt: skip
            for template in self.templates:
                family.add_metric([template.spec.name], getattr(template.counts, count))
            yield family


def render_once(specs: Sequence[TemplateSpec], chain: CloudChain) -> int:
    """`cchain-agent --once`: render every template (and run its command if it changed) from
    the table directly; return 0 when every one succeeded, else 1."""
    if not specs:
        raise ValidationError("--once renders templates, and none is given",
                              hint="give --template SRC:DEST or a [template NAME] section")  # fmt: skip
    # SIGTERM unwinds as Ctrl-C does: no temporary file left, the command's group killed.
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        ok = True
        for spec in specs:
            ok = Template(spec, Reader.direct(chain, spec.error_on_missing)).render() and ok
        return 0 if ok else 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
