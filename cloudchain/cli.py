"""The cchain command: build the parser from the command modules' declarations, check the
arguments, run one action, and turn every expected failure into one line and an exit code.

Nothing here talks to AWS: failures the library expects arrive as CloudChainError, and the
system's as OSError; each becomes one `cchain: error:` line (a traceback only with --debug).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .commands import SECTIONS
from .commands.agent_refresh import refresh_agent
from .commands.exec_argv import ServiceFlag, misplaced_after_exec, services_problem, split_exec
from .commands.spec import (
    CONFIG_FLAGS,
    CONFIGURATION,
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    FROM_STDIN_OR_PROMPT,
    PROG,
    Action,
    Invocation,
    Option,
    Terminated,
)
from .errors import CloudChainError, SecretNotFoundError, ValidationError, VersionConflictError
from .validation import shown

if TYPE_CHECKING:
    from .agent.client import AgentClient

ACTIONS: dict[str, Action] = {a.name: a for s in SECTIONS for a in s.actions}
JSON = Option(
    ("--json",),
    "JSON output ("
    + ", ".join(f"--{a.name}" for a in ACTIONS.values() if "json" in a.accepts)
    + ")",
)
EPILOG = """\
exit codes: 0 ok, 1 error, 2 usage or invalid input, 3 secret not found, 4 version conflict
(--expect-version, a pending version, a rotation running), 5 something is due for rotation
(--due), 130/143 interrupted (SIGINT/SIGTERM); --exec exits with the command's status
(--exec --watch --on-change exit: 75 when the service changed).

examples:
  printf '%s\\n' 'hunter2' | cchain -u alice -e billing --save -
  cchain -u alice -e billing --read
  cchain -e billing --exec -- ./deploy.sh
"""


def _add(group: Any, option: Option) -> None:
    group.add_argument(*option.flags, help=option.help, **option.kwargs)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for cchain: one section per purpose."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [-u USER] [-e SERVICE] ACTION [options]",
        description="Keep application secrets encrypted with AWS KMS in a DynamoDB table.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    general = parser.add_argument_group("general")
    general.add_argument("-h", "--help", action="help", help="show this help and exit")
    general.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    general.add_argument(
        "--debug", action="store_true", help="show tracebacks and debug logging, never a secret"
    )
    _add(general, JSON)
    general.add_argument(
        "--no-agent",
        action="store_true",
        help="read from AWS even when CLOUDCHAIN_AGENT names an agent",
    )
    which = parser.add_argument_group("which secret")
    which.add_argument("-u", "--user", help="the user (DynamoDB range key Username)")
    which.add_argument(
        "-e",
        "--service",
        action=ServiceFlag,
        help="the service (DynamoDB hash key Service); --exec, --export and --resolve take "
        "several, a later one winning a variable they share",
    )
    parser.set_defaults(services=[])
    for section in (*SECTIONS, CONFIGURATION):
        group = parser.add_argument_group(section.title)
        for action in section.actions:
            _add(group, action.option)
        for option in section.options:
            _add(group, option)
    return parser


def _given(value: object) -> bool:
    # Identity, not equality: --rollback 0 and --expect-version 0 are given (0 == False).
    return value is not None and value is not False and value != ""


def _check_usage(
    parser: argparse.ArgumentParser, args: argparse.Namespace, command: list[str] | None
) -> Action:
    chosen = [a for a in ACTIONS.values() if _given(getattr(args, a.option.dest))]
    if not chosen and (_given(args.rotate_every) or _given(args.not_after)):
        chosen = [ACTIONS["schedule"]]  # a schedule alone, with -u and -e, changes just that
    if {a.name for a in chosen} == {"rotate", "due"}:
        chosen = [ACTIONS["rotate"]]  # --rotate --due: rotate every secret that is due
    if not chosen:
        parser.error(f"choose an action: {', '.join(a.option.flag for a in ACTIONS.values())}")
    if len(chosen) > 1:
        parser.error(f"choose one action, not {' and '.join(a.option.flag for a in chosen)}")
    action = chosen[0]
    problem = services_problem(action.name, args.services)
    if problem:
        parser.error(problem)
    if action.needs == "row" and (args.user is None or args.service is None):
        parser.error(f"{action.option.flag} needs -u/--user and -e/--service")
    if action.needs == "service" and args.service is None:
        parser.error(f"{action.option.flag} needs -e/--service")
    for option in (JSON, *(o for s in SECTIONS for o in s.options)):
        if _given(getattr(args, option.dest)) and option.dest not in action.accepts:
            users = [a.option.flag for a in ACTIONS.values() if option.dest in a.accepts]
            parser.error(f"{option.flag} goes with {' or '.join(users)}")
    if getattr(args, "output", None) == "":
        parser.error("-o/--output needs a file name (leave it out to write to stdout)")
    if action.name == "exec" and not command:
        parser.error("--exec needs a command: --exec -- CMD [ARGS...]")
    if action.name == "save" and args.binary not in (None, False, True):
        parser.error("--binary base64 goes with --export, --exec or --import")
    if action.name != "save" and args.binary is True:
        parser.error(f"{action.option.flag} --binary needs its encoding: --binary base64")
    if action.name == "save" and args.binary and args.save not in ("-", FROM_STDIN_OR_PROMPT):
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


def _configure_logging(debug: bool) -> None:
    """Send cloudchain's warnings (and with --debug its debug log) to stderr, one line each.

    Only cloudchain's own logger: botocore's DEBUG log prints request bodies, and a KMS
    Encrypt body holds the plaintext.
    """
    import logging

    logger = logging.getLogger("cloudchain")
    for handler in [h for h in logger.handlers if getattr(h, "cchain", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.cchain = True  # type: ignore[attr-defined]
    form = f"{PROG}: %(name)s: %(message)s" if debug else f"{PROG}: warning: %(message)s"
    handler.setFormatter(logging.Formatter(form))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)


def _error(message: str, debug: bool, hint: str | None = None) -> None:
    if debug:
        import traceback

        traceback.print_exc(file=sys.stderr)
    # One line, whatever a name in it holds: control characters are printed as escapes.
    print(f"{PROG}: error: {shown(message)}", file=sys.stderr)
    if hint:
        print(f"{PROG}: hint: {shown(hint)}", file=sys.stderr)


def _agent_for(args: argparse.Namespace) -> AgentClient | None:
    """The agent that serves this run's reads: the one CLOUDCHAIN_AGENT names, unless
    --no-agent, or a configuration flag asks for something the agent may not serve."""
    if args.no_agent or "CLOUDCHAIN_AGENT" not in os.environ:
        return None
    flags = ("config", *CONFIG_FLAGS)
    if any(getattr(args, flag, None) is not None for flag in flags):
        return None
    from .agent.client import AgentClient, AgentUnavailable

    try:
        return AgentClient.from_environment()
    except AgentUnavailable as why:
        print(f"{PROG}: warning: {why}; reading from AWS directly", file=sys.stderr)
        return None


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run cchain with argv (default sys.argv[1:]) and return the exit code."""
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks what to complete; this exits
        from .commands.doctor import autocomplete

        autocomplete(parser)
    given = list(sys.argv[1:] if argv is None else argv)
    own_argv, command = split_exec(given)
    try:
        misplaced = misplaced_after_exec(parser, given)
        if misplaced:
            parser.error(
                f"{' '.join(misplaced)} after --exec would be taken as the command: put "
                "cchain's options before --exec (cchain -e SERVICE [options] --exec -- CMD)"
            )
        args = parser.parse_args(own_argv)
        action = _check_usage(parser, args, command)
    except SystemExit as exit:  # argparse's --help, --version and usage errors
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    if args.debug:
        _configure_logging(args.debug)
    agent = _agent_for(args)
    # SIGTERM stops bulk work as Ctrl-C does; only the main thread may set a handler.
    catch_sigterm = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    )
    if catch_sigterm:
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        # Logging is set up when the AWS path starts: a read through the agent needs none.
        invocation = Invocation(args, command, agent, lambda: _configure_logging(args.debug))
        code = action.run(invocation)
        # --rotate --due and --import-from may write to several services: they refresh each.
        if action.changes and code == EXIT_OK and args.service is not None:
            refresh_agent(args, args.service, args.user if action.changes == "row" else None)
        return code
    except CloudChainError as err:
        _error(str(err), args.debug, err.hint)
        return exit_code_for(err)
    except KeyboardInterrupt as err:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(err, Terminated) else EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away: say nothing more, and let nothing flush into the pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        _error(f"{err.strerror or err}{where}", args.debug)
        return EXIT_ERROR
    finally:
        if catch_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run() -> None:
    """The cchain command itself: main() in a process of its own.

    A cchain process lives for one command, and what it allocates is freed by reference
    counting (an export of 1,000 secrets peaks at the same memory either way). The cyclic
    collector would only scan botocore's many long-lived objects, and one such full
    collection landed in the middle of a read, adding a fifth to its time; so it is off.
    """
    import gc

    gc.disable()
    raise SystemExit(main())
