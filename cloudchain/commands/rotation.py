"""Actions on staged versions and rotation: promote, abort and rotate."""

from __future__ import annotations

import sys

from ..errors import ValidationError
from ..validation import check_new_row, shown
from .io import info, warn, write_stdout
from .spec import EXIT_OK, FROM_STDIN_OR_PROMPT, Action, Invocation, Option, Section

DEFAULT_HOOK_TIMEOUT = "60s"


def promote(inv: Invocation) -> int:
    """Make the pending version current."""
    args = inv.args
    version = inv.chain.promote(
        args.service, args.user, expect_version=args.expect_version, comment=args.comment
    )
    info(
        f"promoted pending version {version} of {shown(args.service)}/{shown(args.user)} to current"
    )
    write_stdout(f"{version}\n")
    return EXIT_OK


def abort(inv: Invocation) -> int:
    """Discard the pending version."""
    args = inv.args
    version = inv.chain.abort(args.service, args.user, comment=args.comment)
    info(f"discarded pending version {version} of {shown(args.service)}/{shown(args.user)}")
    return EXIT_OK


def hook_of(command: str | None, timeout: str | None) -> tuple[str, ...] | None:
    """The hook's argv (split like a shell would, but run without one), checked, or None."""
    import shlex

    from ..durations import parse_duration
    from ..rotation import check_hook

    if timeout is not None and command is None:
        raise ValidationError("--hook-timeout goes with --hook")
    if command is None:
        return None
    try:
        argv = tuple(shlex.split(command))
    except ValueError as err:
        raise ValidationError(f"--hook cannot be split into a command: {err}") from None
    problem = check_hook(argv)
    if problem is not None:
        raise ValidationError(f"--hook: {problem}")
    parse_duration(timeout or DEFAULT_HOOK_TIMEOUT, "--hook-timeout")
    return argv


def rotate(inv: Invocation) -> int:
    """Rotate a secret: create a pending version, run the hook's set and test, promote."""
    from ..durations import parse_duration
    from ..rotation import Hook
    from ..rotation import rotate as run_rotation
    from .secrets import read_secret

    args = inv.args
    check_new_row(args.service, args.user)  # bad input costs nothing: before stdin, before AWS
    argv = hook_of(args.hook, args.hook_timeout)
    hook = None
    if argv is not None:
        hook = Hook(
            argv, parse_duration(args.hook_timeout or DEFAULT_HOOK_TIMEOUT, "--hook-timeout")
        )
    # A pipe is read now, before any AWS call; a terminal is asked only if a value is needed.
    given = None
    if sys.stdin is None or not sys.stdin.isatty():
        given = read_secret("-")

    def value() -> str | bytes:
        return given if given is not None else read_secret(FROM_STDIN_OR_PROMPT)

    where = f"{shown(args.service)}/{shown(args.user)}"

    def on_step(step: str, version: int) -> None:
        info(f"rotating {where}: {step} (pending version {version})")

    rotated = run_rotation(
        inv.chain, args.service, args.user, value, hook, comment=args.comment, on_step=on_step
    )
    if rotated.resumed and given is not None:
        warn(
            "a pending version from an interrupted rotation was resumed; the value given was not used"
        )
    info(f"rotated {where} to version {rotated.version} (was {rotated.previous_version})")
    write_stdout(f"{rotated.version}\n")
    return EXIT_OK


SECTION = Section(
    "staged versions and rotation",
    actions=(
        Action(
            "promote",
            ("--promote",),
            "make the pending version current (the current one becomes previous); print its number",
            promote,
            needs="row",
            changes="row",
            accepts=("expect_version", "comment"),
        ),
        Action(
            "abort",
            ("--abort",),
            "discard the pending version (recorded in --history)",
            abort,
            needs="row",
            changes="row",
            accepts=("comment",),
        ),
        Action(
            "rotate",
            ("--rotate",),
            "rotate the secret: a pending version from stdin (or the one an interrupted "
            "rotation left), then HOOK set, HOOK test, and promote; print the new version",
            rotate,
            needs="row",
            changes="row",
            accepts=("hook", "hook_timeout", "comment"),
        ),
    ),
    options=(
        Option(
            ("--stage",),
            "--read: the version with this label (pending, current, previous; read from AWS, "
            "not the agent); --save: pending saves it beside the current one",
            {"choices": ("current", "pending", "previous"), "metavar": "LABEL"},
        ),
        Option(("--replace-pending",), "--save --stage pending: replace a pending version"),
        Option(
            ("--hook",),
            "--rotate: run CMD set, then CMD test, with the pending value on stdin (split like "
            "a shell line, run without a shell)",
            {"metavar": "CMD"},
        ),
        Option(
            ("--hook-timeout",),
            "--rotate: how long each hook step may run before its process group is killed "
            "(default 60s)",
            {"metavar": "DURATION"},
        ),
    ),
)
