"""Actions on one secret: save, read, list, delete, undelete, purge and tags."""

from __future__ import annotations

import json
import sys

from ..errors import ValidationError
from ..validation import MAX_SECRET_BYTES, check_new_row, shown
from .due import SCHEDULE_DESTS, schedule_column, schedule_flags
from .generating import GENERATE_DESTS, generated_value, password_spec
from .io import info, read_stdin, utf8_text, warn, write_stdout
from .spec import EXIT_OK, FROM_STDIN_OR_PROMPT, Action, Invocation, Option, Section


def _strip_one_newline(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


def read_secret(value: str, binary: bool = False) -> str | bytes:
    """Return the secret to save from the flag value, stdin or a no-echo prompt.

    With binary, stdin's bytes are the secret exactly: nothing is stripped or decoded. Stdin
    is read up to the size limit (and a line ending) plus one byte, never further.
    """
    if binary:
        return read_stdin("the secret", MAX_SECRET_BYTES)
    if value not in ("-", FROM_STDIN_OR_PROMPT):
        warn(
            "a secret given on the command line is visible to other users "
            "(ps, shell history); prefer --save - or the prompt"
        )
        return value
    if value == FROM_STDIN_OR_PROMPT and sys.stdin is not None and sys.stdin.isatty():
        import getpass

        first = getpass.getpass("Secret: ")
        if getpass.getpass("Repeat secret: ") != first:
            raise ValidationError("the two secrets entered do not match; nothing was saved")
        return first
    data = read_stdin("the secret", MAX_SECRET_BYTES, slack=2)  # room for a trailing "\r\n"
    return utf8_text(_strip_one_newline(data), "the secret on standard input")


def tags_of(values: list[str] | None) -> dict[str, str]:
    """Return {key: value} for --tag KEY=VALUE flags (split at the first '=')."""
    tags: dict[str, str] = {}
    for value in values or ():
        key, equals, tag = value.partition("=")
        if not equals:
            raise ValidationError(f"--tag {value!r} must be KEY=VALUE")
        tags[key] = tag
    return tags


def iso(epoch: int | None) -> str:
    """Return epoch seconds as ISO 8601 UTC, or '-'."""
    if epoch is None:
        return "-"
    from datetime import datetime, timezone

    try:
        return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # a stored time no calendar holds
        return str(epoch)


def save(inv: Invocation) -> int:
    """Save a new version."""
    args = inv.args
    check_new_row(args.service, args.user)  # bad input costs nothing: before stdin, before AWS
    tags = tags_of(args.tag)
    rotate_every, not_after = schedule_flags(args)
    stage = args.stage or "current"
    if stage == "previous" or (args.replace_pending and stage != "pending"):
        raise ValidationError("--save takes --stage pending (with --replace-pending) or current")
    spec = password_spec(args)
    generated = generated_value(spec) if spec else None
    secret = generated if generated is not None else read_secret(args.save, args.binary)
    chain = inv.chain
    version = chain.save(
        args.service,
        args.user,
        secret,
        expect_version=args.expect_version,
        history_size=args.history_size,
        comment=args.comment,
        tags=tags,
        untag=args.untag or (),
        rotate_every=rotate_every,
        not_after=not_after if isinstance(not_after, str) else None,  # the new value's
        stage=stage,
        replace_pending=args.replace_pending,
    )
    saved = "saved" if stage == "current" else "staged"
    info(
        f"{saved} {args.service}/{args.user} version {version} in table '{chain.config.tablename}'"
    )
    if generated is not None and args.show:
        write_stdout(generated + "\n")  # asked for: stdout only, never a log or a message
    return EXIT_OK


def read(inv: Invocation) -> int:
    """Print a secret."""
    args = inv.args
    if args.stage in (None, "current"):
        value = inv.read(args.service, args.user, args.secret_version)
    else:  # a staged version is read from AWS: the agent serves readers of the current one
        value = inv.chain.read(args.service, args.user, args.secret_version, stage=args.stage)
    if isinstance(value, bytes):
        write_stdout(value)  # a binary secret comes out exactly, with nothing added
    else:
        write_stdout(value if args.no_newline else value + "\n")
    return EXIT_OK


def list_secrets(inv: Invocation) -> int:
    """List secrets by name."""
    args = inv.args
    entries = list(inv.chain.list(args.service, tags=tags_of(args.tag), deleted=args.deleted))
    if args.json:
        rows = [{"service": e.service, "user": e.user, "legacy": e.legacy, "tags": e.tags}
                for e in entries]  # fmt: skip
        for row, e in zip(rows, entries, strict=True):
            if e.rotate_every is not None or e.not_after is not None:  # only scheduled rows
                row.update(rotate_every=e.rotate_every, not_after=e.not_after, due_at=e.due_at)
        if args.deleted:
            for row, e in zip(rows, entries, strict=True):
                row.update(deleted_at=e.deleted_at, deleted_by=e.deleted_by,
                           expires_at=iso(e.expires_at))  # fmt: skip
        write_stdout(json.dumps(rows, ensure_ascii=False) + "\n")
    elif args.deleted:
        write_stdout("".join(
            f"{shown(e.service)}\t{shown(e.user)}\t{shown(e.deleted_at or '-')}\t"
            f"{shown(e.deleted_by or '-')}\t{iso(e.expires_at)}\n"
            for e in entries
        ))  # fmt: skip
    else:
        mark = {True: "\tlegacy", False: ""}
        lines = (f"{shown(e.service)}\t{shown(e.user)}{mark[e.legacy]}{schedule_column(e)}\n"
                 for e in entries)  # fmt: skip
        write_stdout("".join(lines))
    return EXIT_OK


def delete(inv: Invocation) -> int:
    """Delete a secret, recoverably."""
    args = inv.args
    chain = inv.chain
    deleted = chain.delete(args.service, args.user, comment=args.comment)
    info(
        f"deleted {shown(args.service)}/{shown(args.user)} from table "
        f"'{chain.config.tablename}' (version {deleted.version}); --undelete restores it until "
        f"{iso(deleted.expires_at)}, --purge destroys it now"
    )
    return EXIT_OK


def undelete(inv: Invocation) -> int:
    """Restore a deleted secret's last value as a new version."""
    args = inv.args
    version = inv.chain.undelete(args.service, args.user, comment=args.comment)
    info(f"restored {args.service}/{args.user} as version {version}")
    write_stdout(f"{version}\n")
    return EXIT_OK


def purge(inv: Invocation) -> int:
    """Delete a secret for good."""
    args = inv.args
    chain = inv.chain
    chain.purge(args.service, args.user, force=args.force)
    info(
        f"purged {shown(args.service)}/{shown(args.user)} and every version from table "
        f"'{chain.config.tablename}'"
    )
    return EXIT_OK


def tags(inv: Invocation) -> int:
    """Print a secret's tags, or change them (--tag, --untag) without a new version."""
    args = inv.args
    chain = inv.chain
    if args.tag or args.untag:
        current = chain.set_tags(args.service, args.user, tags_of(args.tag), args.untag or ())
    else:
        current = chain.tags(args.service, args.user)
    if args.json:
        write_stdout(json.dumps(current, ensure_ascii=False, sort_keys=True) + "\n")
    else:
        write_stdout("".join(f"{shown(k)}={shown(v)}\n" for k, v in sorted(current.items())))
    return EXIT_OK


SAVE_OPTIONS: tuple[str, ...] = ("expect_version", "binary", "comment", "tag", "untag")
SAVE_OPTIONS += GENERATE_DESTS + SCHEDULE_DESTS + ("stage", "replace_pending")

SECTION = Section(
    "one secret",
    actions=(
        Action(
            "save",
            ("-s", "--save"),
            "save a secret as a new version: '-' or no value reads stdin (one trailing newline "
            "is stripped), or prompts twice on a terminal; a value given here is visible to `ps`",
            save,
            needs="row",
            changes="row",
            accepts=SAVE_OPTIONS,
            kwargs={"nargs": "?", "const": FROM_STDIN_OR_PROMPT, "metavar": "SECRET"},
        ),
        Action(
            "read",
            ("-r", "--read"),
            "print the secret to stdout",
            read,
            needs="row",
            accepts=("no_newline", "secret_version", "stage"),
        ),
        Action(
            "list",
            ("-l", "--list"),
            "list service<TAB>user (-e: one service's)",
            list_secrets,
            accepts=("json", "tag", "deleted"),
        ),
        Action(
            "delete",
            ("-d", "--delete"),
            "delete a secret, recoverably for --recovery-days",
            delete,
            needs="row",
            changes="row",
            accepts=("comment",),
        ),
        Action(
            "undelete",
            ("--undelete",),
            "restore a deleted secret's last value as a new version; print its number",
            undelete,
            needs="row",
            changes="row",
            accepts=("comment",),
        ),
        Action(
            "purge",
            ("--purge",),
            "destroy a deleted secret and every version at once (--force: any secret)",
            purge,
            needs="row",
            changes="row",
            accepts=("force",),
        ),
        Action(
            "tags",
            ("--tags",),
            "print the secret's tags as KEY=VALUE; with --tag/--untag, change them first "
            "(no new version)",
            tags,
            needs="row",
            changes="row",
            accepts=("tag", "untag", "json"),
        ),
    ),
    options=(
        Option(
            ("--expect-version",),
            "--save, --promote: only if the current version is N (0: only if new); else exit 4",
            {"type": int, "metavar": "N"},
        ),
        Option(
            ("--binary",),
            "--save: store stdin's bytes exactly, as binary; --export, --exec, --import: "
            "base64, binary secrets as base64 text named NAME_B64",
            {"nargs": "?", "const": True, "choices": ("base64",), "metavar": "base64"},
        ),
        Option(("-n", "--no-newline"), "--read: no newline after the secret"),
        Option(("--secret-version",), "--read: read version N", {"type": int, "metavar": "N"}),
        Option(
            ("--comment",),
            "--save, --rollback, --import, --delete, --undelete, --promote, --abort, --rotate: why, "
            "recorded with the version "
            "(at most 256 characters)",
            {"metavar": "TEXT"},
        ),
        Option(
            ("--tag",),
            "--save, --tags: set tag KEY on the secret; --list, --export, --exec: only secrets "
            "with it; repeatable",
            {"action": "append", "metavar": "KEY=VALUE"},
        ),
        Option(
            ("--untag",),
            "--save, --tags: remove tag KEY; repeatable",
            {"action": "append", "metavar": "KEY"},
        ),
        Option(("--deleted",), "--list: only deleted secrets, with when and by whom"),
        Option(("--force",), "--purge: also a secret that is not deleted"),
    ),
)
