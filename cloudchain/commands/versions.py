"""Actions on the versions of one secret: history and rollback."""

from __future__ import annotations

import json

from .io import info, write_stdout
from .spec import EXIT_OK, Action, Invocation, Section


def history(inv: Invocation) -> int:
    """List the retained versions."""
    args = inv.args
    versions = inv.chain.history(args.service, args.user)
    if args.json:
        rows = [{"version": v.version, "saved_at": v.saved_at} for v in versions]
        write_stdout(json.dumps(rows) + "\n")
    else:
        write_stdout("".join(f"{v.version}\t{v.saved_at or '-'}\n" for v in versions))
    return EXIT_OK


def rollback(inv: Invocation) -> int:
    """Save an old version's value as a new version."""
    args = inv.args
    version = inv.chain.rollback(args.service, args.user, args.rollback)
    info(f"rolled {args.service}/{args.user} back to the value of version {args.rollback}")
    write_stdout(f"{version}\n")
    return EXIT_OK


SECTION = Section(
    "versions",
    actions=(
        Action(
            "history",
            ("--history",),
            "list retained versions: version<TAB>saved-at",
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
            kwargs={"type": int, "metavar": "N"},
        ),
    ),
)
