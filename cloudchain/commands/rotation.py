"""Actions on staged versions and rotation: promote, abort and rotate."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..errors import ValidationError
from ..validation import check_new_row, shown
from .agent_refresh import refresh_agent
from .generating import GENERATE_DESTS
from .io import info, warn, write_stdout
from .spec import EXIT_ERROR, EXIT_OK, FROM_STDIN_OR_PROMPT, Action, Invocation, Option, Section

if TYPE_CHECKING:
    from ..rotation import Hook

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
    from ..rotation import MAX_HOOK_TIMEOUT, check_hook

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
    if parse_duration(timeout or DEFAULT_HOOK_TIMEOUT, "--hook-timeout") > MAX_HOOK_TIMEOUT:
        # The lease outlasts two steps, so a crashed rotation would block the next for long;
        # and past ~290 years the wait itself cannot be expressed (OverflowError).
        raise ValidationError(f"--hook-timeout: at most 1d, not {timeout!r}")
    return argv


def _hook(args: argparse.Namespace) -> Hook | None:
    from ..durations import parse_duration
    from ..rotation import Hook

    argv = hook_of(args.hook, args.hook_timeout)
    if argv is None:
        return None
    return Hook(argv, parse_duration(args.hook_timeout or DEFAULT_HOOK_TIMEOUT, "--hook-timeout"))


def rotate(inv: Invocation) -> int:
    """Rotate a secret: create a pending version, run the hook's set and test, promote."""
    from ..rotation import rotate as run_rotation
    from .generating import generated_value, password_spec
    from .secrets import read_secret

    args = inv.args
    if args.due:
        return rotate_due(inv)
    if args.service is None or args.user is None:
        raise ValidationError("--rotate needs -u/--user and -e/--service (or --due)")
    check_new_row(args.service, args.user)  # bad input costs nothing: before stdin, before AWS
    hook = _hook(args)
    spec = password_spec(args)
    # A pipe is read now, before any AWS call; a terminal is asked only if a value is needed.
    given = None
    if spec is None and (sys.stdin is None or not sys.stdin.isatty()):
        given = read_secret("-")
    made: list[str] = []  # the value generated, if one was

    def value() -> str | bytes:
        if spec is not None:
            made.append(generated_value(spec))
            return made[0]
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
    if made and args.show:
        write_stdout(made[0] + "\n")  # asked for: stdout only, never a log or a message
    return EXIT_OK


def rotate_due(inv: Invocation) -> int:
    """Rotate every secret due now (or -e's), one at a time, with generated values; print a
    summary. Ctrl-C stops before the next secret and says what was done."""
    from ..errors import CloudChainError
    from ..rotation import HookFailedError
    from ..rotation import rotate as run_rotation
    from ..staging import RotationBusyError
    from .generating import generated_value, password_spec

    args = inv.args
    if args.user is not None:
        raise ValidationError("--rotate --due rotates every due secret: leave out -u/--user")
    hook = _hook(args)
    spec = password_spec(args)
    if spec is None:
        raise ValidationError("--rotate --due makes a value for each secret: add --generate")
    if args.show:
        raise ValidationError("--show does not go with --rotate --due")
    chain = inv.chain
    due = [d for d in chain.due(args.service, within=0) if d.due]
    done: dict[str, list[str]] = {"rotated": [], "failed": [], "skipped": []}

    def summary() -> str:
        return ", ".join(f"{what} {len(rows)}" for what, rows in done.items())

    steps: list[str] = []  # the steps the current secret's rotation has begun
    for n, secret in enumerate(due):
        where = f"{shown(secret.service)}/{shown(secret.user)}"
        steps.clear()
        try:
            rotated = run_rotation(
                chain, secret.service, secret.user, lambda: generated_value(spec), hook,
                comment=args.comment, on_step=lambda step, _version: steps.append(step),
            )  # fmt: skip
            done["rotated"].append(where)
            info(f"rotated {where} to version {rotated.version} (was {rotated.previous_version})")
            refresh_agent(args, secret.service, secret.user)
        except KeyboardInterrupt:
            # Stopped while telling the agent, it was rotated all the same: say so.
            state = "after" if where in done["rotated"] else "during"
            left = len(due) - n - 1
            if state == "after":
                detail = ""
            elif steps[-1:] == ["finish"]:  # the promote was sent: it may have landed
                detail = " (its promote was under way: --history shows whether it landed)"
            else:
                detail = " (nothing promoted for it)"
            info(f"interrupted {state} {where}{detail}; {summary()}, {left} not started")
            raise
        except (HookFailedError, RotationBusyError) as err:
            done["failed" if isinstance(err, HookFailedError) else "skipped"].append(where)
            warn(str(err))
        except CloudChainError as err:  # this secret's; the others still get their turn
            done["failed"].append(where)
            warn(f"{where}: {err}")
    info(f"{summary()} of {len(due)} due")
    return EXIT_ERROR if done["failed"] else EXIT_OK


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
            "rotate the secret: a pending version from stdin or --generate (or the one an "
            "interrupted rotation left), then HOOK set, HOOK test, and promote; print the new "
            "version. --rotate --due --generate: every secret due now (-e: of one service)",
            rotate,
            changes="row",
            accepts=("hook", "hook_timeout", "comment", *GENERATE_DESTS),
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
