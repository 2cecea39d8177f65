"""Actions on the versions of one secret: history, rollback and diff."""

from __future__ import annotations

import json
import os
import sys

from ..errors import CloudChainError, ValidationError
from ..validation import shown
from .due import schedule_column
from .io import info, warn, write_stdout
from .spec import EXIT_OK, Action, Invocation, Option, Section

# Enough for any answer to a yes/no question; a longer line is not a yes.
MAX_ANSWER_BYTES = 64


def history(inv: Invocation) -> int:
    """List the retained versions: who made each, when, how and why."""
    args = inv.args
    versions = inv.chain.history(args.service, args.user)
    if args.json:
        rows = [
            {"version": v.version, "saved_at": v.saved_at, "saved_by": v.saved_by,
             "action": v.action, "comment": v.comment, "stage": v.stage}
            for v in versions
        ]  # fmt: skip
        for row, v in zip(rows, versions, strict=True):
            if v.rotate_every is not None or v.not_after is not None:  # only scheduled ones
                row.update(rotate_every=v.rotate_every, not_after=v.not_after, due_at=v.due_at)
        write_stdout(json.dumps(rows, ensure_ascii=False) + "\n")
    else:
        write_stdout("".join(
            f"{v.version}\t{shown(v.saved_at or '-')}\t{shown(v.saved_by or '-')}\t"
            f"{shown(v.action or '-')}\t"
            f"{shown(v.comment or '-')}\t{v.stage or '-'}{schedule_column(v)}\n"
            for v in versions
        ))  # fmt: skip
    return EXIT_OK


def rollback(inv: Invocation) -> int:
    """Save an old version's value as a new version."""
    args = inv.args
    version = inv.chain.rollback(args.service, args.user, args.rollback, comment=args.comment)
    info(f"rolled {args.service}/{args.user} back to the value of version {args.rollback}")
    write_stdout(f"{version}\n")
    return EXIT_OK


def _confirmed(service: str, user: str) -> bool:
    """On a terminal, ask the controlling terminal before printing secret values; without one
    to ask, the answer is no."""
    if not sys.stdout.isatty():
        return True
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    # Unbuffered: a terminal is not seekable, and a buffered "r+" file object insists on it.
    with open(fd, "r+b", buffering=0) as tty:
        try:
            tty.write(
                f"Print both values of {shown(service)}/{shown(user)} in clear? [y/N] ".encode()
            )
            answer = tty.readline(MAX_ANSWER_BYTES)
        except OSError:
            return False
    return answer.strip().lower() in (b"y", b"yes")


def diff(inv: Invocation) -> int:
    """Compare two versions, redacted unless --show-values."""
    from ..diff import summary, unified_diff

    args = inv.args
    numbers = args.diff
    if len(numbers) > 2:
        raise ValidationError("--diff takes at most two versions: --diff [A [B]]")
    chain = inv.chain
    older, newer = [*numbers, None, None][:2]
    result = chain.diff(args.service, args.user, older, newer)
    if args.json:
        write_stdout(json.dumps({
            "from": result.from_version, "to": result.to_version, "changed": result.changed,
            "from_bytes": result.from_bytes, "to_bytes": result.to_bytes,
            "changed_lines": list(result.changed_lines),
        }) + "\n")  # fmt: skip
    else:
        write_stdout(summary(result) + "\n")
    if args.show_values and result.changed:
        if result.binary:
            warn("binary secrets are compared by bytes only; no values were printed")
        elif not _confirmed(args.service, args.user):
            raise CloudChainError("not confirmed; no value was printed")
        else:
            old = chain.read(args.service, args.user, result.from_version)
            new = chain.read(args.service, args.user, result.to_version)
            assert isinstance(old, str) and isinstance(new, str)
            write_stdout(unified_diff(old, new, f"v{result.from_version}", f"v{result.to_version}"))
    return EXIT_OK


SECTION = Section(
    "versions",
    actions=(
        Action(
            "history",
            ("--history",),
            "list retained versions: version<TAB>saved-at<TAB>saved-by<TAB>action<TAB>comment"
            "<TAB>stage (pending, current, previous or -)",
            history,
            needs="row",
            accepts=("json",),
        ),
        Action(
            "rollback",
            ("--rollback",),
            "save version N's value as a new version",
            rollback,
            needs="row",
            changes="row",
            accepts=("comment",),
            kwargs={"type": int, "metavar": "N"},
        ),
        Action(
            "diff",
            ("--diff",),
            "compare versions A and B (default: the previous and the current one; A alone: A "
            "and the current one) without printing either value",
            diff,
            needs="row",
            accepts=("json", "show_values"),
            kwargs={"nargs": "*", "type": int, "metavar": "N"},
        ),
    ),
    options=(
        Option(
            ("--show-values",),
            "--diff: also print a unified diff of the two values (asks first on a terminal)",
        ),
    ),
)
