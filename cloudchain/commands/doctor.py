"""Actions that look after the set-up: --doctor, and --completion for shells.

Shell completion uses argcomplete, a maintained library that completes from the very parser
cchain runs (so every flag completes, as declared), in bash, zsh and fish, and lets -e and -u
complete from the table. It is an optional extra: cloudchain[completion].
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

from ..errors import CloudChainConfigError
from .io import write_stdout
from .spec import EXIT_ERROR, EXIT_OK, Action, Invocation, Option, Section

SHELLS = ("bash", "zsh", "fish")
INSTALL_HINT = "pip install 'cloudchain[completion]'"
# The most a completion of -e or -u waits for the table, every region it fails over to included.
COMPLETION_SECONDS = 2.0


def doctor(inv: Invocation) -> int:
    """Check the set-up, one line per check."""
    from ..doctor import FAIL, Doctor, examine

    args = inv.args
    results = examine(
        Doctor(overrides=inv.overrides(), path=args.config, service=args.service, write=args.write)
    )
    if args.json:
        rows = [{"check": r.check, "status": r.status, "detail": r.detail, "fix": r.fix}
                for r in results]  # fmt: skip
        write_stdout(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
    else:
        write_stdout("".join(
            f"{r.status:<4}  {r.check:<12}  {r.detail}" + (f"; fix: {r.fix}" if r.fix else "") + "\n"
            for r in results
        ))  # fmt: skip
    return EXIT_ERROR if any(r.status == FAIL for r in results) else EXIT_OK


def completion(inv: Invocation) -> int:
    """Print a completion script for a shell."""
    try:
        import argcomplete
    except ImportError:
        raise CloudChainConfigError(
            "shell completion needs argcomplete", hint=INSTALL_HINT
        ) from None
    script = argcomplete.shellcode(["cchain"], shell=inv.args.completion)  # type: ignore[attr-defined]
    write_stdout(script)
    return EXIT_OK


def _quick_chain(parsed: argparse.Namespace) -> Any:
    """A CloudChain for completing: the flags typed so far, and a short leash on AWS."""
    from ..chain import CloudChain
    from .spec import CONFIG_FLAGS

    overrides = {field: getattr(parsed, flag, None) for flag, field in CONFIG_FLAGS.items()}
    overrides.update(connect_timeout=1.0, read_timeout=2.0, max_attempts=1)
    return CloudChain.from_config(getattr(parsed, "config", None), **overrides)


def _within_deadline(names: Callable[[], list[str]]) -> list[str]:
    """names(), or nothing if it fails or takes longer than COMPLETION_SECONDS in all: a
    daemon thread, left behind when late (the shell's completion process exits right after)."""
    found: list[list[str]] = []

    def run() -> None:
        with contextlib.suppress(Exception):  # completing must never print an error
            found.append(names())

    thread = threading.Thread(target=run, name="cchain-complete", daemon=True)
    thread.start()
    thread.join(COMPLETION_SECONDS)
    return found[0] if found else []


def complete_services(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The services in the table, for -e; nothing (and no error) when it cannot be reached."""
    return _within_deadline(lambda: sorted({e.service for e in _quick_chain(parsed_args).list()}))


def complete_users(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The users of the -e service, for -u."""
    service = getattr(parsed_args, "service", None)
    if not service:
        return []
    return _within_deadline(lambda: [e.user for e in _quick_chain(parsed_args).list(service)])


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request (argcomplete exits); do nothing without it."""
    try:
        import argcomplete
    except ImportError:
        return
    for action in parser._actions:  # argcomplete reads completers off the parser's actions
        if "--service" in action.option_strings:
            action.completer = complete_services  # type: ignore[attr-defined]
        elif "--user" in action.option_strings:
            action.completer = complete_users  # type: ignore[attr-defined]
    from .exec_argv import ServiceFlag

    # argcomplete runs only actions it knows have no side effects: -e's own action sets only
    # args.service(s), which -u's completer reads.
    argcomplete.safe_actions.add(ServiceFlag)  # type: ignore[attr-defined]
    argcomplete.autocomplete(parser)


SECTION = Section(
    "set-up and shell",
    actions=(
        Action(
            "doctor",
            ("--doctor",),
            "check the configuration, credentials, endpoint, table, key and permissions, one "
            "line each; exit 1 if any failed",
            doctor,
            accepts=("json", "write"),
        ),
        Action(
            "completion",
            ("--completion",),
            "print a completion script for bash, zsh or fish (needs cloudchain[completion])",
            completion,
            kwargs={"choices": SHELLS, "metavar": "SHELL"},
        ),
    ),
    options=(
        Option(
            ("--write",),
            "--doctor: also save, read and purge a probe secret (service cloudchain-doctor, "
            "or -e's)",
        ),
    ),
)
