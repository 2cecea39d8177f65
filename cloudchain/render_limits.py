"""Bounds on rendering a template: output size, time, memory and the arithmetic that builds them.

A template is code: `{{ 'x' * 3000000000 }}`, nested loops or a macro that calls itself would
otherwise take the memory, the time or the disk. Rendering is bounded by:

- the output: counted as Jinja2 generates it, and `*` (string and list repetition), `**` and
  `+` are checked by the sandbox's operator hooks before (or, for `+`, just after) they build
  anything larger;
- the time: checked at every chunk of output and every call the template makes, and, in the
  main thread, by an interval timer (SIGALRM) that also stops a loop that prints nothing;
- the memory: in the main thread, the address space may grow by at most MEMORY_HEADROOM (or
  four times the output bound) while rendering, so an allocation no check foresaw (a filter
  asked for a width of three billion) fails as MemoryError instead of exhausting the host;
- the recursion: Python's own limit, whose RecursionError becomes a one-line error.

The process-wide bounds (the timer, the address space) are set only for the duration of one
rendering, only in the main thread, and restored after.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any, NamedTuple

from .errors import ValidationError

DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024
DEFAULT_MAX_SECONDS = 30.0
MEMORY_HEADROOM = 1024 * 1024 * 1024
# A power whose result would be larger than this many bits is refused before it is computed.
MAX_POWER_BITS = 1_000_000
_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2,
          "g": 1024**3, "gib": 1024**3}  # fmt: skip
# The widths and precisions in a %-format string.
_WIDTHS = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\d*)(?:\.(\d*))?")
# What takes a width and builds a string that wide: str's methods, and Jinja2's filters.
_WIDE_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_WIDE_FILTERS = ("center", "indent", "wordwrap", "truncate")
_SIZE = re.compile(r"\s*(\d+)\s*([a-z]*)\s*", re.IGNORECASE)


# Beyond any output a template should make, and small enough for the bounds' arithmetic.
MAX_SIZE = 1 << 40


def parse_size(text: str) -> int:
    """Return a size in bytes from `16777216`, `1024`, `16MiB`, `512K` or `1GiB` (binary
    units); anything else, or 0, is a one-line error."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else None
    size = int(match.group(1)) * _UNITS[unit] if match and unit in _UNITS else 0
    if not text.isascii() or not 0 < size <= MAX_SIZE:
        raise ValidationError(
            f"{text!r} is not a size: give bytes (1024) or a number with KiB, MiB or GiB "
            "(16MiB), at most 1 TiB"
        )
    return size


class RenderLimits(NamedTuple):
    """How much output and time one rendering may take. (A NamedTuple, not a dataclass: the
    parser imports this module, and dataclasses costs every command, the agent's fast read
    too, several milliseconds.)"""

    max_output: int = DEFAULT_MAX_OUTPUT
    max_seconds: float = DEFAULT_MAX_SECONDS


class LimitExceeded(Exception):
    """A rendering went over one of its bounds (the message says which, never a value)."""


class Budget:
    """One rendering's bounds as it runs: the bytes written so far and the deadline."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.start()

    def start(self) -> None:
        """Start the clock: rendering starts now (reading the secrets it names is done)."""
        self.deadline = time.monotonic() + self.limits.max_seconds
        self.written = 0

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(self.too_slow())

    def too_slow(self) -> str:
        return f"rendering took longer than {self.limits.max_seconds:g} s (--max-time)"

    def too_large(self) -> str:
        return f"the output would be over {self.limits.max_output} bytes (--max-output)"

    def add_output(self, chunk: str) -> None:
        self.written += len(chunk.encode("utf-8", "surrogatepass"))
        if self.written > self.limits.max_output:
            raise LimitExceeded(self.too_large())
        self.check_time()

    def check_size(self, value: Any) -> None:
        """Refuse a string, bytes or sequence already larger than the output may be."""
        if isinstance(value, (str, bytes, list, tuple)) and len(value) > self.limits.max_output:
            raise LimitExceeded(self.too_large())

    def check_number(self, value: object) -> None:
        """Refuse a width or count larger than the output may be."""
        if isinstance(value, int) and value > self.limits.max_output:
            raise LimitExceeded(self.too_large())

    def binop(self, operator: str, left: Any, right: Any) -> Any:
        """The operators a template may use to build something large, bounded."""
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, (str, bytes, list, tuple)) and isinstance(count, int)
                if sized and len(seq) * max(count, 0) > self.limits.max_output:
                    raise LimitExceeded(self.too_large())
            result = left * right
        elif operator == "**":
            integers = isinstance(left, int) and isinstance(right, int) and abs(left) > 1
            if integers and right > 0 and right * math.log2(abs(left)) > MAX_POWER_BITS:
                raise LimitExceeded(f"a power larger than {MAX_POWER_BITS} bits")
            result = left**right
        elif operator == "%":
            if isinstance(left, str):  # '%3000000000s' % x: a width the output cannot hold
                for match in _WIDTHS.finditer(left):
                    for number in match.groups():
                        self.check_number(int(number or 0))
            result = left % right
        else:
            result = left + right
        self.check_size(result)
        return result


def bounded_environment(budget: Budget) -> Any:
    """Jinja2's immutable sandbox with budget's bounds on operators and calls."""
    import jinja2
    import jinja2.sandbox

    class BoundedEnvironment(jinja2.sandbox.ImmutableSandboxedEnvironment):  # type: ignore[misc]
        # Intercepted operators are also never folded at compile time, so a literal
        # `'x' * 3000000000` is bounded too instead of being built by the compiler.
        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            return budget.binop(operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            budget.check_time()
            if isinstance(getattr(__obj, "__self__", None), str) and (
                getattr(__obj, "__name__", None) in _WIDE_METHODS
            ):
                for value in (*args, *kwargs.values()):
                    budget.check_number(value)
            result = super().call(__context, __obj, *args, **kwargs)
            budget.check_size(result)
            return result

    env = BoundedEnvironment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    for name in _WIDE_FILTERS:
        env.filters[name] = _bounded_filter(env.filters[name], budget)
    return env


def _bounded_filter(original: Any, budget: Budget) -> Any:
    import functools

    @functools.wraps(original)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[1:], *kwargs.values()):
            budget.check_number(value)
        return original(*args, **kwargs)

    return bounded


def _address_space() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def process_bounds(budget: Budget) -> Iterator[None]:
    """In the main thread, bound the time with SIGALRM and the memory with RLIMIT_AS while
    the body runs; elsewhere, do nothing (the checks in Budget still apply)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        budget.start()
        yield
        return

    def _alarm(signum: int, frame: FrameType | None) -> None:
        raise LimitExceeded(budget.too_slow())

    budget.start()
    previous_handler = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(budget.deadline - time.monotonic(), 0.001))
    restore_memory = _bound_memory(max(MEMORY_HEADROOM, 4 * budget.limits.max_output))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        # None: a handler set outside Python, which cannot be put back; the default can.
        signal.signal(signal.SIGALRM, previous_handler or signal.SIG_DFL)
        restore_memory()


def _bound_memory(headroom: int) -> Any:
    """Lower the soft RLIMIT_AS to what is mapped now plus headroom; return the undo."""
    try:
        import resource
    except ImportError:
        return lambda: None
    used = _address_space()
    if used is None or sys.platform != "linux":
        return lambda: None
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = used + headroom
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft <= wanted:
        return lambda: None
    try:
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    except (OSError, ValueError):
        return lambda: None
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
