"""Rotation schedules: --due (what needs rotating), --schedule (see or change one secret's),
and the --rotate-every / --not-after flags --save takes too. No KMS call in any of them."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ..validation import shown
from .io import info, write_stdout
from .spec import EXIT_DUE, EXIT_OK, Action, Invocation, Option, Section

if TYPE_CHECKING:
    from ..results import Entry, VersionInfo
    from ..schedule import Keep

# What --save accepts beside its own options.
SCHEDULE_DESTS = ("rotate_every", "not_after")


def schedule_flags(args: argparse.Namespace) -> tuple[int | Keep | None, str | Keep | None]:
    """The rotation period and hard expiry the flags ask for (KEEP: not given), checked
    before any AWS call: a bad one is a usage error naming its flag."""
    from ..schedule import KEEP, parse_not_after, parse_rotate_every

    period = KEEP if args.rotate_every is None else parse_rotate_every(args.rotate_every)
    expiry = KEEP if args.not_after is None else parse_not_after(args.not_after)
    return period, expiry


def describe_schedule(rotate_every: int | None, not_after: str | None) -> str:
    """rotate-every=30d not-after=... for the fields that are set, or 'no schedule'."""
    from ..durations import format_duration

    fields = []
    if rotate_every is not None:
        fields.append(f"rotate-every={format_duration(rotate_every)}")
    if not_after is not None:
        fields.append(f"not-after={shown(not_after)}")  # as stored: escaped
    return " ".join(fields) or "no schedule"


def schedule_column(
    shown_row: Entry | VersionInfo,
) -> str:
    """A tab and `rotate-every=30d not-after=... due-at=...` for a scheduled row or version;
    nothing for one without a schedule, so those lines stay as they were."""
    if shown_row.rotate_every is None and shown_row.not_after is None:
        return ""
    text = describe_schedule(shown_row.rotate_every, shown_row.not_after)
    return f"\t{text}" + (f" due-at={shown_row.due_at}" if shown_row.due_at else "")


def due(inv: Invocation) -> int:
    """List the secrets due, or soon due, for rotation; exit 5 when any is due now."""
    from ..durations import parse_duration
    from .secrets import tags_of  # secrets imports this module

    args = inv.args
    within = parse_duration(args.within, "--within") if args.within is not None else None
    tags = tags_of(args.tag)
    found = inv.chain.due(args.service, within=within, tags=tags)
    if args.json:
        rows = [{"service": d.service, "user": d.user, "version": d.version,
                 "saved_at": d.saved_at, "due_at": d.due_at, "why": d.why, "due": d.due}
                for d in found]  # fmt: skip
        write_stdout(json.dumps(rows, ensure_ascii=False) + "\n")
    else:
        write_stdout("".join(
            f"{shown(d.service)}\t{shown(d.user)}\t{d.version}\t{shown(d.saved_at or '-')}\t"
            f"{d.due_at}\t{d.why}\t{'due' if d.due else 'soon'}\n"
            for d in found
        ))  # fmt: skip
    return EXIT_DUE if any(d.due for d in found) else EXIT_OK


def schedule(inv: Invocation) -> int:
    """Print a secret's schedule, or change it (--rotate-every, --not-after) first."""
    args = inv.args
    period, expiry = schedule_flags(args)
    chain = inv.chain
    from ..schedule import Keep

    if isinstance(period, Keep) and isinstance(expiry, Keep):
        rotate_every, not_after = chain.schedule(args.service, args.user)
    else:
        rotate_every, not_after = chain.set_schedule(
            args.service, args.user, rotate_every=period, not_after=expiry
        )
        info(f"schedule of {shown(args.service)}/{shown(args.user)}: "
             f"{describe_schedule(rotate_every, not_after)}")  # fmt: skip
    if args.json:
        write_stdout(json.dumps({"rotate_every": rotate_every, "not_after": not_after}) + "\n")
    else:
        write_stdout(describe_schedule(rotate_every, not_after) + "\n")
    return EXIT_OK


SECTION = Section(
    "rotation schedules",
    actions=(
        Action(
            "due",
            ("--due",),
            "list secrets due (or due within --within) for rotation, oldest first: "
            "service<TAB>user<TAB>version<TAB>saved-at<TAB>due-at<TAB>why<TAB>due|soon; "
            "exit 5 when any is due now",
            due,
            accepts=("json", "tag", "within"),
        ),
        Action(
            "schedule",
            ("--schedule",),
            "print the secret's rotation schedule; with --rotate-every/--not-after (which "
            "also work alone with -u and -e), change it first, without a new version",
            schedule,
            needs="row",
            changes="row",
            accepts=("json", *SCHEDULE_DESTS),
        ),
    ),
    options=(
        Option(
            ("--rotate-every",),
            "--save, --schedule: rotate the secret every DURATION (30d, 12h, 1w), counted from "
            "its current version's save; off clears it",
            {"metavar": "DURATION"},
        ),
        Option(
            ("--not-after",),
            "--save, --schedule: the current value expires on its own at DATE (ISO 8601, UTC: "
            "2027-01-31 or 2027-01-31T12:00:00Z); off clears it",
            {"metavar": "DATE"},
        ),
        Option(
            ("--within",),
            "--due: also list secrets due within DURATION (default 7d)",
            {"metavar": "DURATION"},
        ),
    ),
)
