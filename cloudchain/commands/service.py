"""Actions on whole services: export, and the declarations of export, exec, resolve and import
(exec and resolve are in execute.py, import in importing.py)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import ValidationError
from ..formats import (
    FORMATS,
    VARIABLE_FORMATS,
    Refused,
    check_keyed_options,
    check_prefix,
    check_writers,
    describe,
    render_export,
)
from ..validation import shown
from .environ import clash, read_services, variable_names
from .execute import exec_command, resolve
from .importing import import_file
from .io import warn, write_output, write_stdout
from .outfile import check_output
from .spec import EXIT_OK, Action, Invocation, Option, Section
from .watch import OPTIONS as WATCH_OPTIONS

if TYPE_CHECKING:
    from ..results import Secret


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
    if fmt == "k8s" and len(args.services) > 1 and args.k8s_name is None:
        raise ValidationError("--format k8s with several -e services needs --k8s-name")
    check_keyed_options(fmt, args.service, args.k8s_name, args.k8s_namespace)
    check_writers(fmt)


def _merged(inv: Invocation, fmt: str) -> tuple[dict[str, Secret], dict[str, str]]:
    """The -e services' secrets, read in parallel, merged in the order given, and each user's
    variable name: a later service wins a variable (in json, yaml...: a user) they share, with
    a warning naming both services (an error with --no-override)."""
    merged: dict[str, Secret] = {}
    names: dict[str, str] = {}
    holder: dict[str, tuple[str, str]] = {}  # variable (or user) -> (service, user)
    for service, secrets in zip(inv.args.services, read_services(inv), strict=True):
        if fmt in VARIABLE_FORMATS:
            variables = variable_names(inv, service, secrets)
        else:
            variables = {user: user for user in secrets}
        for user, value in secrets.items():
            key = variables[user]
            if key in holder:
                earlier, earlier_user = holder[key]
                clash(inv, key if fmt in VARIABLE_FORMATS else f"user {key!r}", earlier, service)
                del merged[earlier_user], names[earlier_user]
            merged[user], names[user], holder[key] = value, key, (service, user)
    return merged, names


def export(inv: Invocation) -> int:
    """Print or write every secret of the -e services."""
    args = inv.args
    fmt = args.format or "json"
    check_prefix(args.prefix)
    _check_format_options(fmt, args)
    if args.output:
        check_output(args.output)  # refused before a secret is read; checked again on writing
    secrets, names = _merged(inv, fmt)
    services = ", ".join(args.services)
    # Fully rendered before any output: no partial export.
    exported = render_export(
        fmt, secrets, names, binary_base64=bool(args.binary), skip=args.skip_unrepresentable,
        service=services, k8s_name=args.k8s_name, k8s_namespace=args.k8s_namespace,
        github_mask=args.github_mask,
    )  # fmt: skip
    _warn_skipped(services, exported.skipped, f"in {fmt}")
    if exported.preamble:  # the runner masks the values before the file holds any of them
        write_stdout(exported.preamble)
    count = len(secrets) - len(exported.skipped)
    written = f"exported {count} secrets of {shown(services)} to {args.output}"
    write_output(args.output, exported.text, written)
    return EXIT_OK


SECTION = Section(
    "whole service",
    actions=(
        Action(
            "export",
            ("--export",),
            "print every secret of -e (repeatable)",
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
                "no_override",
                "allow_empty",
            ),
        ),
        Action(
            "exec",
            ("--exec",),
            "-- CMD [ARGS...]: run CMD with the secrets of -e (repeatable) and of the cchain:// "
            "references in the environment (must come last)",
            exec_command,
            accepts=(
                "prefix",
                "pristine",
                "allow_env",
                "tag",
                "binary",
                "skip_unrepresentable",
                "no_override",
                "allow_empty",
                *WATCH_OPTIONS,
            ),
        ),
        Action(
            "resolve",
            ("--resolve",),
            "print NAME='value' lines for the variables --exec would set (writes ?dest files, "
            "which stay)",
            resolve,
            accepts=(
                "prefix",
                "allow_env",
                "tag",
                "binary",
                "skip_unrepresentable",
                "no_override",
                "allow_empty",
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
            "--export, --exec, --resolve: prefix for variable names; --import: the prefix a dotenv or env "
            "file's names carry",
            {"default": "", "metavar": "PREFIX"},
        ),
        Option(
            ("--pristine",),
            "--exec: start from an empty environment (but PATH, HOME, USER, LANG, TERM, TZ and "
            "the cchain:// references)",
        ),
        Option(
            ("--skip-unrepresentable",),
            "--export, --exec, --resolve: leave out, with a warning naming them, the secrets the format "
            "or the environment cannot carry",
        ),
        Option(
            ("--dry-run",),
            "--import, --import-from: show what would change, write nothing; --render: list what "
            "it reads",
        ),
        Option(
            ("--allow-env",),
            "--exec, --export, --resolve: let a secret or a cchain:// reference set NAME "
            "although it changes how programs run (PATH, LD_*, PYTHON*...); repeatable",
            {"action": "append", "metavar": "NAME"},
        ),
        Option(
            ("--no-override",),
            "--exec, --export, --resolve: two -e services setting one variable is an error, "
            "not a warning that the later wins",
        ),
        Option(
            ("--allow-empty",),
            "--exec, --export, --resolve: accept a -e service with no secrets (else exit 3)",
        ),
    ),
)
