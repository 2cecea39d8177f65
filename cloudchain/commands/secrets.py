"""Actions on one secret: save, read, list and delete."""

from __future__ import annotations

import json
import sys

from ..errors import ValidationError
from ..validation import MAX_SECRET_BYTES, check_new_row, shown
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


def save(inv: Invocation) -> int:
    """Save a new version."""
    args = inv.args
    check_new_row(args.service, args.user)  # bad input costs nothing: before stdin, before AWS
    secret = read_secret(args.save, args.binary)
    chain = inv.chain
    version = chain.save(
        args.service,
        args.user,
        secret,
        expect_version=args.expect_version,
        history_size=args.history_size,
    )
    info(f"saved {args.service}/{args.user} version {version} in table '{chain.config.tablename}'")
    return EXIT_OK


def read(inv: Invocation) -> int:
    """Print a secret."""
    args = inv.args
    value = inv.chain.read(args.service, args.user, version=args.secret_version)
    if isinstance(value, bytes):
        write_stdout(value)  # a binary secret comes out exactly, with nothing added
    else:
        write_stdout(value if args.no_newline else value + "\n")
    return EXIT_OK


def list_secrets(inv: Invocation) -> int:
    """List secrets by name."""
    args = inv.args
    entries = list(inv.chain.list(args.service))
    if args.json:
        rows = [{"service": e.service, "user": e.user, "legacy": e.legacy} for e in entries]
        write_stdout(json.dumps(rows, ensure_ascii=False) + "\n")
    else:
        mark = {True: "\tlegacy", False: ""}
        lines = (f"{shown(e.service)}\t{shown(e.user)}{mark[e.legacy]}\n" for e in entries)
        write_stdout("".join(lines))
    return EXIT_OK


def delete(inv: Invocation) -> int:
    """Delete a secret."""
    args = inv.args
    chain = inv.chain
    chain.delete(args.service, args.user)
    info(
        f"deleted {shown(args.service)}/{shown(args.user)} and all its versions from table "
        f"'{chain.config.tablename}'"
    )
    return EXIT_OK


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
            accepts=("expect_version", "binary"),
            kwargs={"nargs": "?", "const": FROM_STDIN_OR_PROMPT, "metavar": "SECRET"},
        ),
        Action(
            "read",
            ("-r", "--read"),
            "print the secret to stdout",
            read,
            needs="row",
            accepts=("no_newline", "secret_version"),
        ),
        Action(
            "list",
            ("-l", "--list"),
            "list service<TAB>user (-e: one service's)",
            list_secrets,
            accepts=("json",),
        ),
        Action("delete", ("-d", "--delete"), "delete a secret, every version", delete, needs="row"),
    ),
    options=(
        Option(
            ("--expect-version",),
            "--save: only if the current version is N (0: only if new); else exit 4",
            {"type": int, "metavar": "N"},
        ),
        Option(("--binary",), "--save: store stdin's bytes exactly, as binary"),
        Option(("-n", "--no-newline"), "--read: no newline after the secret"),
        Option(("--secret-version",), "--read: read version N", {"type": int, "metavar": "N"}),
    ),
)
