"""--exec and --resolve: run a command with secrets in its environment, or print the variables
that environment would get (the -e services' secrets and the cchain:// references resolved).

--exec becomes the command (execve) when it can; with ?dest files to remove afterwards, it runs
the command as its child instead, passes signals on, and exits with the command's status.
"""

from __future__ import annotations

import errno
import os
import re
import sys

from ..errors import CloudChainError, ValidationError
from ..formats.env import single_quoted_for_sh
from ..refs import find_references, is_reference
from ..validation import shown
from .environ import Built, DestFiles, build
from .io import info, write_stdout
from .spec import EXIT_CANNOT_EXECUTE, EXIT_COMMAND_NOT_FOUND, EXIT_OK, Invocation
from .watch import watch_exec, watch_plan

# --exec --pristine keeps only these inherited variables (and the cchain:// references).
PRISTINE_KEEP = ("PATH", "HOME", "USER", "LANG", "TERM", "TZ")
# What --resolve prints as a variable's name: one sh reads as a name, nothing else.
SH_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _program(name: str) -> str | None:
    """Resolve a command with the caller's own PATH, before any secret touches it."""
    if os.sep in name:
        return name
    import shutil

    return shutil.which(name, path=os.environ.get("PATH", os.defpath))


def _inherited(inv: Invocation) -> dict[str, str]:
    """What the command inherits, before secrets: all of ours, or with --pristine the basics
    and the references (which name what the command is meant to get)."""
    if not getattr(inv.args, "pristine", False):
        return dict(os.environ)
    return {
        key: value
        for key, value in os.environ.items()
        if key in PRISTINE_KEEP or is_reference(value)
    }


def _check_something_to_add(inv: Invocation, base: dict[str, str]) -> None:
    """Refuse an --exec or --resolve with neither a service nor a reference: it would add nothing."""
    if not inv.args.services and not any(is_reference(v) for v in base.values()):
        flag = "--exec" if inv.command is not None else "--resolve"
        raise ValidationError(
            f"{flag} needs -e/--service, or cchain:// references in the environment"
        )


def _check_watchable(inv: Invocation, base: dict[str, str]) -> None:
    """Refuse what --watch cannot follow: several services, or a ?dest reference."""
    if len(inv.args.services) != 1:
        raise ValidationError("--exec --watch watches one service: give exactly one -e")
    # A restart is decided on the environment alone, where a ?dest variable holds only a path:
    # a changed value would be rewritten under the running command, never restarting it.
    dest = [v for v, r in find_references(base, set(inv.args.allow_env or ())).items() if r.dest]
    if dest:
        raise ValidationError(f"--exec --watch does not take ?dest references ({dest[0]})")


def _too_large(command: list[str], built: Built) -> CloudChainError:
    added = built.set_here
    largest = max(added, key=lambda n: len(added[n]), default="?")
    return CloudChainError(
        f"cannot run {command[0]}: the environment is too large for the system "
        f"(E2BIG); the largest secret variable is {largest}"
    )


def exec_command(inv: Invocation) -> int:
    """Run a command with the secrets in its environment."""
    command = inv.command or []
    base = _inherited(inv)
    _check_something_to_add(inv, base)
    plan = watch_plan(inv.args)  # None without --watch
    if plan is not None:
        _check_watchable(inv, base)
    program = _program(command[0])
    if program is None:
        info(f"error: command not found: {shown(command[0])}")
        return EXIT_COMMAND_NOT_FOUND
    files = DestFiles()
    try:
        if plan is not None:  # a child, restarted on change, instead of execve
            return watch_exec(inv, plan, program, command, lambda: build(inv, base, files).env)
        built = build(inv, base, files)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            if files.paths:  # the files go when the command ends: it runs as our child
                from ..child import run_child  # only with ?dest files: the parser need not load it

                return run_child(program, command, built.env)
            os.execve(program, command, built.env)
        except OSError as err:
            if err.errno == errno.E2BIG:
                raise _too_large(command, built) from None
            info(f"error: cannot run {shown(command[0])}: {err.strerror}")
            return EXIT_COMMAND_NOT_FOUND if err.errno == errno.ENOENT else EXIT_CANNOT_EXECUTE
    finally:
        files.remove()  # also on an error, Ctrl-C or SIGTERM before or while the command runs
    return EXIT_OK  # not reached: execve replaced this process


def _check_printable_names(base: dict[str, str]) -> None:
    """Refuse a reference in a variable whose name sh would not read as one: printed as
    NAME='value', `X;cmd` or a name holding a newline would run as a command when sourced."""
    for name in sorted(n for n, value in base.items() if is_reference(value)):
        if not SH_NAME.match(name):
            raise ValidationError(
                f"--resolve cannot print {shown(name)}: it is not a name sh reads back "
                "(letters, digits and _, not starting with a digit)"
            )


def resolve(inv: Invocation) -> int:
    """Print NAME='value' lines for the variables --exec would set; ?dest files stay."""
    base = dict(os.environ)
    _check_something_to_add(inv, base)
    _check_printable_names(base)
    files = DestFiles()
    try:
        built = build(inv, base, files)
    except BaseException:
        files.remove()
        raise
    # sh single quotes: `. FILE` in sh and `--import --format env` read each value back exactly.
    write_stdout("".join(f"{n}={single_quoted_for_sh(v)}\n" for n, v in built.set_here.items()))
    if files.paths:
        info(f"wrote {len(files.paths)} file(s) for ?dest references; they stay after cchain "
             f"exits: {' '.join(shown(p) for p in files.paths)}")  # fmt: skip
    return EXIT_OK
