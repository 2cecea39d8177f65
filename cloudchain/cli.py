"""The cchain command: parse arguments, make one library call, format the result.

Nothing here talks to AWS directly; every failure the library expects arrives as a
CloudChainError and becomes one `cchain: error:` line and an exit code.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from ._version import __version__
from .errors import CloudChainError, SecretNotFoundError, ValidationError, VersionConflictError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4

PROG = "cchain"
# Marks `--save` given without a value: read stdin, or prompt on a terminal.
_FROM_STDIN_OR_PROMPT = object()

# CLI flag destination -> Config field.
_CONFIG_FLAGS = {
    "region": "region_name",
    "endpoint_url": "endpoint_url",
    "kms_endpoint_url": "kms_endpoint_url",
    "table": "tablename",
    "key_alias": "keyalias",
    "profile": "profile_name",
    "history_size": "history_size",
}
_NEEDS_ROW = ("save", "read", "delete", "history", "rollback")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for cchain."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Keep application secrets encrypted with AWS KMS in a DynamoDB table.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage or invalid input, 3 secret not found, "
        "4 version conflict (--expect-version).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-u", "--user", help="the user (DynamoDB range key Username)")
    parser.add_argument("-e", "--service", help="the service (DynamoDB hash key Service)")

    actions = parser.add_argument_group("actions (choose one)").add_mutually_exclusive_group()
    actions.add_argument(
        "-s",
        "--save",
        nargs="?",
        const=_FROM_STDIN_OR_PROMPT,
        metavar="SECRET",
        help="save a secret: '-' or no value reads stdin (one trailing newline is stripped), "
        "or prompts twice on a terminal; a value on the command line is visible to `ps`",
    )
    actions.add_argument("-r", "--read", action="store_true", help="print the secret to stdout")
    actions.add_argument(
        "-l", "--list", action="store_true", help="list service<TAB>user, optionally for -e"
    )
    actions.add_argument("-d", "--delete", action="store_true", help="delete the secret")
    actions.add_argument(
        "--history",
        action="store_true",
        help="list retained versions, newest first: version<TAB>saved-at (no values)",
    )
    actions.add_argument(
        "--rollback",
        type=int,
        metavar="N",
        help="save version N's value as a new version; prints the new version number",
    )
    actions.add_argument(
        "--setup", action="store_true", help="create the table if missing and wait until ACTIVE"
    )

    output = parser.add_argument_group("options")
    output.add_argument(
        "-n", "--no-newline", action="store_true", help="--read: no newline after the secret"
    )
    output.add_argument(
        "--secret-version", type=int, metavar="N", help="--read: read version N, not the latest"
    )
    output.add_argument(
        "--expect-version",
        type=int,
        metavar="N",
        help="--save: only if the current version is N (0: only if it does not exist); else exit 4",
    )
    output.add_argument("--json", action="store_true", help="--list, --history: JSON output")
    output.add_argument(
        "--create-key",
        action="store_true",
        help="--setup: also create a symmetric KMS key behind the key alias if it is missing",
    )
    output.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")

    config = parser.add_argument_group("configuration (flag > environment > file > default)")
    config.add_argument("--config", metavar="PATH", help="config file (default ~/.cchainrc)")
    config.add_argument("--region", help="AWS region")
    config.add_argument("--endpoint-url", metavar="URL", help="DynamoDB endpoint")
    config.add_argument("--kms-endpoint-url", metavar="URL", help="KMS endpoint")
    config.add_argument("--table", help="DynamoDB table (default safedb)")
    config.add_argument("--key-alias", metavar="ALIAS", help="KMS key alias used for saving")
    config.add_argument("--profile", help="AWS profile from ~/.aws/config")
    config.add_argument(
        "--history-size", type=int, metavar="N", help="versions kept per secret (default 10)"
    )
    return parser


def _chosen_action(args: argparse.Namespace) -> str | None:
    if args.save is not None:
        return "save"
    if args.rollback is not None:
        return "rollback"
    for action in ("read", "list", "delete", "history", "setup"):
        if getattr(args, action):
            return action
    return None


def _check_usage(
    parser: argparse.ArgumentParser, args: argparse.Namespace, action: str | None
) -> None:
    if action is None:
        parser.error(
            "choose an action: --save, --read, --list, --delete, --history, --rollback or --setup"
        )
    if action in _NEEDS_ROW and (args.user is None or args.service is None):
        parser.error(f"--{action} needs -u/--user and -e/--service")
    if args.create_key and action != "setup":
        parser.error("--create-key goes with --setup")
    if args.no_newline and action != "read":
        parser.error("-n/--no-newline goes with --read")
    if args.json and action not in ("list", "history"):
        parser.error("--json goes with --list or --history")
    if args.secret_version is not None and action != "read":
        parser.error("--secret-version goes with --read")
    if args.expect_version is not None and action != "save":
        parser.error("--expect-version goes with --save")


def _strip_one_newline(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


def read_secret(value: object) -> str:
    """Return the secret to save from the flag value, stdin or a no-echo prompt."""
    if isinstance(value, str) and value != "-":
        print(
            f"{PROG}: warning: a secret given on the command line is visible to other users "
            "(ps, shell history); prefer --save - or the prompt",
            file=sys.stderr,
        )
        return value
    if value is _FROM_STDIN_OR_PROMPT and sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass("Secret: ")
        if getpass.getpass("Repeat secret: ") != first:
            raise ValidationError("the two secrets entered do not match; nothing was saved")
        return first
    if sys.stdin is None:
        raise ValidationError("no standard input to read the secret from")
    data = _strip_one_newline(sys.stdin.buffer.read())
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the secret on standard input is not UTF-8 text") from None


def _write_stdout(text: str) -> None:
    # Bytes, not text: the secret must come out exactly, whatever the locale's encoding.
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.buffer.flush()


def _info(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _run(action: str, args: argparse.Namespace) -> int:
    from .chain import CloudChain

    overrides = {field: getattr(args, flag) for flag, field in _CONFIG_FLAGS.items()}
    if action == "save":
        # Read the secret before building anything, so bad input never reaches AWS.
        secret = read_secret(args.save)
    chain = CloudChain.from_config(args.config, **overrides)
    name = chain.config.tablename
    row = f"{args.service}/{args.user}"
    if action == "save":
        version = chain.save(args.service, args.user, secret, expect_version=args.expect_version)
        _info(f"saved {row} version {version} in table '{name}'")
    elif action == "read":
        value = chain.read(args.service, args.user, version=args.secret_version)
        _write_stdout(value if args.no_newline else value + "\n")
    elif action == "delete":
        chain.delete(args.service, args.user)
        _info(f"deleted {row} and all its versions from table '{name}'")
    elif action == "history":
        versions = chain.history(args.service, args.user)
        if args.json:
            rows: Any = [{"version": v.version, "saved_at": v.saved_at} for v in versions]
            _write_stdout(json.dumps(rows) + "\n")
        else:
            _write_stdout("".join(f"{v.version}\t{v.saved_at or '-'}\n" for v in versions))
    elif action == "rollback":
        version = chain.rollback(args.service, args.user, args.rollback)
        _info(f"rolled {row} back to the value of version {args.rollback}")
        _write_stdout(f"{version}\n")
    elif action == "list":
        entries = list(chain.list(args.service))
        if args.json:
            listed = [{"service": e.service, "user": e.user} for e in entries]
            _write_stdout(json.dumps(listed, ensure_ascii=False) + "\n")
        else:
            _write_stdout("".join(f"{e.service}\t{e.user}\n" for e in entries))
    elif action == "setup":
        result = chain.setup(create_key=args.create_key)
        _info(f"table '{name}' {'created' if result.table_created else 'already exists'}")
        if args.create_key:
            alias = chain.config.keyalias
            _info(f"key {alias} {'created' if result.key_created else 'already exists'}")
    return EXIT_OK


def exit_code_for(err: CloudChainError) -> int:
    """Return the documented exit code for a library error."""
    if isinstance(err, SecretNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(err, VersionConflictError):
        return EXIT_CONFLICT
    if isinstance(err, ValidationError):
        return EXIT_USAGE
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run cchain with argv (default sys.argv[1:]) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        action = _chosen_action(args)
        _check_usage(parser, args, action)
    except SystemExit as exit:  # argparse's --help, --version and usage errors
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    assert action is not None
    if args.debug:
        # Only our own logger: botocore's DEBUG log prints request bodies, which hold plaintext.
        logging.basicConfig(format=f"{PROG}: %(name)s: %(message)s", level=logging.WARNING)
        logging.getLogger("cloudchain").setLevel(logging.DEBUG)
    try:
        return _run(action, args)
    except CloudChainError as err:
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        one_line = " ".join(str(err).splitlines())
        print(f"{PROG}: error: {one_line}", file=sys.stderr)
        return exit_code_for(err)
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
