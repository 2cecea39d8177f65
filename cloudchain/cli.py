"""The cchain command: parse and check arguments, run one command, map errors to exit codes.

Nothing here talks to AWS; every failure the library expects arrives as a CloudChainError and
becomes one `cchain: error:` line and an exit code. The commands themselves are in commands.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from ._version import __version__
from .errors import CloudChainError, SecretNotFoundError, ValidationError, VersionConflictError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4

PROG = "cchain"
# Marks `--save` given without a value: read stdin, or prompt on a terminal.
FROM_STDIN_OR_PROMPT = object()

# CLI flag destination -> Config field.
CONFIG_FLAGS = {
    "region": "region_name",
    "endpoint_url": "endpoint_url",
    "kms_endpoint_url": "kms_endpoint_url",
    "table": "tablename",
    "key_alias": "keyalias",
    "profile": "profile_name",
    "history_size": "history_size",
    "max_workers": "max_workers",
    "connect_timeout": "connect_timeout",
    "read_timeout": "read_timeout",
    "max_attempts": "max_attempts",
}
ACTIONS = (
    "save",
    "read",
    "list",
    "delete",
    "history",
    "rollback",
    "export",
    "exec",
    "import",
    "reencrypt",
    "policy",
    "setup",
)
_NEEDS_USER = ("save", "read", "delete", "history", "rollback")
_NEEDS_SERVICE = (*_NEEDS_USER, "export", "exec", "import", "policy")
# Options that only make sense with some actions.
_OPTION_ACTIONS = {
    "no_newline": ("read",),
    "secret_version": ("read",),
    "expect_version": ("save",),
    "json": ("list", "history"),
    "create_key": ("setup",),
    "format": ("export", "import"),
    "output": ("export",),
    "prefix": ("export", "exec"),
    "pristine": ("exec",),
    "dry_run": ("import",),
    "binary": ("save",),
    "account": ("policy",),
    "key_arn": ("policy",),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for cchain."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Keep application secrets encrypted with AWS KMS in a DynamoDB table.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage or invalid input, 3 secret not found, "
        "4 version conflict (--expect-version); --exec exits with the command's status.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-u", "--user", help="the user (DynamoDB range key Username)")
    parser.add_argument("-e", "--service", help="the service (DynamoDB hash key Service)")

    act = parser.add_argument_group("actions (choose one)").add_mutually_exclusive_group()
    act.add_argument(
        "-s",
        "--save",
        nargs="?",
        const=FROM_STDIN_OR_PROMPT,
        metavar="SECRET",
        help="save a secret as a new version: '-' or no value reads stdin (one trailing "
        "newline is stripped), or prompts twice on a terminal; a value given here is visible "
        "to `ps`",
    )
    act.add_argument("-r", "--read", action="store_true", help="print the secret to stdout")
    act.add_argument("-l", "--list", action="store_true", help="list service<TAB>user")
    act.add_argument("-d", "--delete", action="store_true", help="delete a secret, every version")
    act.add_argument(
        "--history", action="store_true", help="list retained versions: version<TAB>saved-at"
    )
    act.add_argument(
        "--rollback", type=int, metavar="N", help="save version N's value as a new version"
    )
    act.add_argument("--export", action="store_true", help="print every secret of -e")
    act.add_argument(
        "--exec",
        action="store_true",
        help="-- CMD [ARGS...]: run CMD with -e's secrets in its environment (must come last)",
    )
    act.add_argument(
        "--import",
        dest="import_file",
        metavar="FILE",
        help="save a JSON object {user: secret} or a dotenv file ('-': stdin) into -e",
    )
    act.add_argument(
        "--reencrypt",
        action="store_true",
        help="re-encrypt every secret (or -e's), every retained version, under the key alias",
    )
    act.add_argument(
        "--policy",
        choices=("read", "write"),
        help="print an IAM policy that reads (or writes) only -e's secrets",
    )
    act.add_argument("--setup", action="store_true", help="create the table if missing")

    opt = parser.add_argument_group("options")
    opt.add_argument("-n", "--no-newline", action="store_true", help="--read: no newline")
    opt.add_argument("--secret-version", type=int, metavar="N", help="--read: version N")
    opt.add_argument(
        "--expect-version",
        type=int,
        metavar="N",
        help="--save: only if the current version is N (0: only if new); else exit 4",
    )
    opt.add_argument("--json", action="store_true", help="--list, --history: JSON output")
    opt.add_argument(
        "--format",
        choices=("json", "dotenv", "env"),
        help="--export: json (default), dotenv or env; --import: json or dotenv (default: detect)",
    )
    opt.add_argument("-o", "--output", metavar="FILE", help="--export: write FILE (mode 0600)")
    opt.add_argument("--prefix", default="", help="--export, --exec: prefix for variable names")
    opt.add_argument("--pristine", action="store_true", help="--exec: start from an empty env")
    opt.add_argument("--dry-run", action="store_true", help="--import: show, write nothing")
    opt.add_argument("--create-key", action="store_true", help="--setup: also create the key")
    opt.add_argument(
        "--binary", action="store_true", help="--save: store stdin's bytes exactly, as binary"
    )
    opt.add_argument("--account", help="--policy: the AWS account id (no STS call)")
    opt.add_argument("--key-arn", help="--policy: the KMS key ARN (no KMS call)")
    opt.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")

    cfg = parser.add_argument_group("configuration (flag > environment > file > default)")
    cfg.add_argument("--config", metavar="PATH", help="config file (default ~/.cchainrc)")
    cfg.add_argument("--region", help="AWS region")
    cfg.add_argument("--endpoint-url", metavar="URL", help="DynamoDB endpoint")
    cfg.add_argument("--kms-endpoint-url", metavar="URL", help="KMS endpoint")
    cfg.add_argument("--table", help="DynamoDB table (default safedb)")
    cfg.add_argument("--key-alias", metavar="ALIAS", help="KMS key alias used for saving")
    cfg.add_argument("--profile", help="AWS profile from ~/.aws/config")
    cfg.add_argument("--history-size", type=int, metavar="N", help="versions kept (default 10)")
    cfg.add_argument("--max-workers", type=int, metavar="N", help="parallel calls (default 16)")
    cfg.add_argument(
        "--connect-timeout", type=float, metavar="S", help="seconds to connect (default 3)"
    )
    cfg.add_argument(
        "--read-timeout", type=float, metavar="S", help="seconds to wait for a reply (default 10)"
    )
    cfg.add_argument(
        "--max-attempts", type=int, metavar="N", help="attempts per AWS call (default 5)"
    )
    return parser


def _given(value: object) -> bool:
    # Identity, not equality: --rollback 0 and --expect-version 0 are given (0 == False).
    return value is not None and value is not False and value != ""


def chosen_action(args: argparse.Namespace) -> str | None:
    """Return the one action the arguments ask for, or None."""
    for action in ACTIONS:
        if _given(getattr(args, "import_file" if action == "import" else action)):
            return action
    return None


def _split_exec(argv: list[str]) -> tuple[list[str], list[str] | None]:
    # Everything after --exec (and an optional --) is the command, never cchain's options.
    if "--exec" not in argv:
        return argv, None
    at = argv.index("--exec")
    command = argv[at + 1 :]
    return argv[: at + 1], command[1:] if command[:1] == ["--"] else command


def _check_usage(
    parser: argparse.ArgumentParser, args: argparse.Namespace, command: list[str] | None
) -> str:
    action = chosen_action(args)
    if action is None:
        parser.error(f"choose an action: {', '.join('--' + a for a in ACTIONS)}")
    if action in _NEEDS_USER and (args.user is None or args.service is None):
        parser.error(f"--{action} needs -u/--user and -e/--service")
    if action in _NEEDS_SERVICE and args.service is None:
        parser.error(f"--{action} needs -e/--service")
    if action == "exec" and not command:
        parser.error("--exec needs a command: --exec -- CMD [ARGS...]")
    for option, actions in _OPTION_ACTIONS.items():
        if _given(getattr(args, option)) and action not in actions:
            flag = "--" + option.replace("_", "-")
            parser.error(f"{flag} goes with {' or '.join('--' + a for a in actions)}")
    if action == "import" and args.format == "env":
        parser.error("--import reads json or dotenv")
    if args.binary and isinstance(args.save, str) and args.save != "-":
        parser.error("--binary reads the secret from stdin: use --save - --binary")
    return action


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
    own_argv, command = _split_exec(list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(own_argv)
        action = _check_usage(parser, args, command)
    except SystemExit as exit:  # argparse's --help, --version and usage errors
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    args.command = command
    if args.debug:
        # Only our own logger: botocore's DEBUG log prints request bodies, which hold plaintext.
        logging.basicConfig(format=f"{PROG}: %(name)s: %(message)s", level=logging.WARNING)
        logging.getLogger("cloudchain").setLevel(logging.DEBUG)
    from .commands import run

    try:
        return run(action, args)
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
