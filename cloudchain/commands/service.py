"""Actions on a whole service: export and exec, and the declarations of all three (import
is in importing.py)."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import CloudChainError, ValidationError
from ..formats import (
    FORMATS,
    VARIABLE_FORMATS,
    Refused,
    check_keyed_options,
    check_loader_variables,
    check_prefix,
    check_writers,
    describe,
    env_names,
    environment,
    render_export,
)
from ..validation import shown
from .importing import import_file
from .io import info, warn, write_output, write_stdout
from .outfile import check_output
from .secrets import tags_of
from .spec import (
    EXIT_CANNOT_EXECUTE,
    EXIT_COMMAND_NOT_FOUND,
    EXIT_OK,
    Action,
    Invocation,
    Option,
    Section,
)
from .watch import OPTIONS as WATCH_OPTIONS
from .watch import watch_exec, watch_plan

if TYPE_CHECKING:
    from ..results import Secret

# --exec --pristine keeps only these inherited variables.
PRISTINE_KEEP = ("PATH", "HOME", "USER", "LANG", "TERM", "TZ")


def _variables(inv: Invocation, secrets: Mapping[str, Secret]) -> dict[str, str]:
    """Map each user to its variable name, refusing loader variables not allowed."""
    args = inv.args
    base64 = [u for u, v in secrets.items() if isinstance(v, bytes)] if args.binary else []
    names = env_names(args.service, secrets, check_prefix(args.prefix), base64=base64)
    check_loader_variables(args.service, names, set(args.allow_env or ()))
    return names


def _warn_skipped(service: str, skipped: tuple[Refused, ...], where: str) -> None:
    if skipped:
        warn(f"left out {len(skipped)} secrets of {shown(service)} that cannot go {where}: "
             f"{describe(skipped)}")  # fmt: skip


def _check_format_options(fmt: str, args: argparse.Namespace) -> None:
    """Refuse a format's own options given with another format, before anything is read."""
    for flag, given, owner in (("--k8s-name", args.k8s_name is not None, "k8s"),
                               ("--k8s-namespace", args.k8s_namespace is not None, "k8s"),
                               ("--github-mask", args.github_mask, "github")):  # fmt: skip
        if given and fmt != owner:
            raise ValidationError(f"{flag} goes with --format {owner}")
    if args.github_mask and not args.output:
        raise ValidationError(
            "--github-mask prints ::add-mask:: lines on stdout, so the entries need a file: "
            'add -o "$GITHUB_ENV"'
        )
    check_keyed_options(fmt, args.service, args.k8s_name, args.k8s_namespace)
    check_writers(fmt)


def export(inv: Invocation) -> int:
    """Print or write every secret of a service."""
    args = inv.args
    fmt = args.format or "json"
    check_prefix(args.prefix)
    _check_format_options(fmt, args)
    if args.output:
        check_output(args.output)  # refused before a secret is read; checked again on writing
    secrets = inv.export(args.service, tags_of(args.tag))
    names = _variables(inv, secrets) if fmt in VARIABLE_FORMATS else {}
    # Fully rendered before any output: no partial export.
    exported = render_export(
        fmt, secrets, names, binary_base64=bool(args.binary), skip=args.skip_unrepresentable,
        service=args.service, k8s_name=args.k8s_name, k8s_namespace=args.k8s_namespace,
        github_mask=args.github_mask,
    )  # fmt: skip
    _warn_skipped(args.service, exported.skipped, f"in {fmt}")
    if exported.preamble:  # the runner masks the values before the file holds any of them
        write_stdout(exported.preamble)
    count = len(secrets) - len(exported.skipped)
    written = f"exported {count} secrets of {args.service} to {args.output}"
    write_output(args.output, exported.text, written)
    return EXIT_OK


def _program(name: str) -> str | None:
    """Resolve a command with the caller's own PATH, before any secret touches it."""
    if os.sep in name:
        return name
    import shutil

    return shutil.which(name, path=os.environ.get("PATH", os.defpath))


def _environment(inv: Invocation) -> tuple[dict[str, str], dict[str, str]]:
    """The command's environment (the inherited one, or --pristine's, and the secrets), and
    the variables the secrets add."""
    args = inv.args
    secrets = inv.export(args.service, tags_of(args.tag))
    names = _variables(inv, secrets)
    if args.pristine:
        env = {key: os.environ[key] for key in PRISTINE_KEEP if key in os.environ}
    else:
        env = dict(os.environ)
    additions, skipped = environment(
        secrets, names, binary_base64=bool(args.binary), skip=args.skip_unrepresentable
    )
    _warn_skipped(args.service, skipped, "in the environment")
    for name in sorted(additions):
        if name in env:
            warn(f"{name} from service {args.service} overrides an inherited variable")
    env.update(additions)
    return env, additions


def exec_command(inv: Invocation) -> int:
    """Run a command with a service's secrets in its environment."""
    args = inv.args
    command = inv.command or []
    check_prefix(args.prefix)
    plan = watch_plan(args)  # None without --watch
    program = _program(command[0])
    if program is None:
        info(f"error: command not found: {command[0]}")
        return EXIT_COMMAND_NOT_FOUND
    if plan is not None:  # a child, restarted on change, instead of execve
        return watch_exec(inv, plan, program, command, lambda: _environment(inv)[0])
    env, additions = _environment(inv)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(program, command, env)
    except OSError as err:
        if err.errno == errno.E2BIG:
            largest = max(additions, key=lambda n: len(additions[n]), default="?")
            raise CloudChainError(
                f"cannot run {command[0]}: the environment is too large for the system "
                f"(E2BIG); the largest secret variable is {largest}"
            ) from None
        info(f"error: cannot run {command[0]}: {err.strerror}")
        return EXIT_COMMAND_NOT_FOUND if err.errno == errno.ENOENT else EXIT_CANNOT_EXECUTE
    return EXIT_OK  # not reached: execve replaced this process


SECTION = Section(
    "whole service",
    actions=(
        Action(
            "export",
            ("--export",),
            "print every secret of -e",
            export,
            needs="service",
            accepts=(
                "format",
                "output",
                "prefix",
                "allow_env",
                "tag",
                "binary",
                "skip_unrepresentable",
                "k8s_name",
                "k8s_namespace",
                "github_mask",
            ),
        ),
        Action(
            "exec",
            ("--exec",),
            "-- CMD [ARGS...]: run CMD with -e's secrets in its environment (must come last)",
            exec_command,
            needs="service",
            accepts=(
                *("prefix", "pristine", "allow_env", "tag", "binary", "skip_unrepresentable"),
                *WATCH_OPTIONS,
            ),
        ),
        Action(
            "import",
            ("--import",),
            "save a JSON object {user: secret}, a dotenv or an env file ('-': stdin) into -e",
            import_file,
            needs="service",
            changes="service",
            accepts=("format", "dry_run", "json", "comment", "prefix", "binary"),
            kwargs={"dest": "import_file", "metavar": "FILE"},
        ),
    ),
    options=(
        Option(
            ("--format",),
            "--export: json (default), dotenv, env, yaml, tfvars, properties, k8s or github; "
            "--import: json, dotenv or env (default: json or dotenv, detected)",
            {"choices": FORMATS},
        ),
        Option(
            ("--k8s-name",),
            "--export --format k8s: the Secret's name (default: the service's)",
            {"metavar": "NAME"},
        ),
        Option(
            ("--k8s-namespace",),
            "--export --format k8s: the Secret's namespace (default: none, kubectl's current)",
            {"metavar": "NAMESPACE"},
        ),
        Option(
            ("--github-mask",),
            "--export --format github: print ::add-mask:: lines for every value on stdout "
            "first (needs -o FILE)",
        ),
        Option(
            ("-o", "--output"),
            "--export, --render: write FILE (mode 0600, replaced atomically)",
            {"metavar": "FILE"},
        ),
        Option(
            ("--prefix",),
            "--export, --exec: prefix for variable names; --import: the prefix a dotenv or env "
            "file's names carry",
            {"default": "", "metavar": "PREFIX"},
        ),
        Option(("--pristine",), "--exec: start from an empty environment"),
        Option(
            ("--skip-unrepresentable",),
            "--export, --exec: leave out, with a warning naming them, the secrets the format "
            "or the environment cannot carry",
        ),
        Option(
            ("--dry-run",),
            "--import, --import-from: show what would change, write nothing; --render: list what "
            "it reads",
        ),
        Option(
            ("--allow-env",),
            "--exec, --export: let a secret set NAME although it changes how programs run "
            "(PATH, LD_*, PYTHON*...); repeatable",
            {"action": "append", "metavar": "NAME"},
        ),
    ),
)
