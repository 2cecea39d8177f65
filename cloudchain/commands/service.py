"""Actions on a whole service: export, exec and import."""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import CloudChainError, IncompleteImportError, ValidationError
from ..formats import (
    Refused,
    check_loader_variables,
    check_prefix,
    decode_base64_variables,
    describe,
    env_names,
    environment,
    import_format,
    parse_import,
    render_export,
    users_for_variables,
)
from ..validation import import_entries, shown
from .io import info, read_file, utf8_text, warn, write_output, write_stdout
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


def export(inv: Invocation) -> int:
    """Print or write every secret of a service."""
    args = inv.args
    fmt = args.format or "json"
    check_prefix(args.prefix)
    secrets = inv.export(args.service, tags_of(args.tag))
    names = {} if fmt == "json" else _variables(inv, secrets)
    # Fully rendered before any output: no partial export.
    exported = render_export(
        fmt, secrets, names, binary_base64=bool(args.binary), skip=args.skip_unrepresentable
    )
    _warn_skipped(args.service, exported.skipped, f"in {fmt}")
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


def exec_command(inv: Invocation) -> int:
    """Run a command with a service's secrets in its environment."""
    args = inv.args
    command = inv.command or []
    check_prefix(args.prefix)
    program = _program(command[0])
    if program is None:
        info(f"error: command not found: {command[0]}")
        return EXIT_COMMAND_NOT_FOUND
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


class ImportReport:
    """What an import planned and wrote, collected from its progress events (any thread)."""

    def __init__(self) -> None:
        self.planned: dict[str, str] = {}
        self.written: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, user: str, event: str) -> None:
        with self._lock:
            if event == "written":
                self.written.append(user)
            else:
                self.planned[user] = event

    def as_json(self, service: str, mapped: Mapping[str, str] | None = None) -> str:
        with self._lock:
            written = set(self.written)
            report = {
                "service": service,
                "written": sorted(written),
                "unchanged": sorted(u for u, a in self.planned.items() if a == "unchanged"),
                "not_written": sorted(
                    u for u, a in self.planned.items() if a != "unchanged" and u not in written
                ),
                "mapped": dict(sorted((mapped or {}).items())),
            }
        return json.dumps(report, ensure_ascii=False) + "\n"


def _entries(inv: Invocation) -> tuple[dict[str, Secret], dict[str, str]]:
    """The import file's entries by user, and {variable: user} for the variables of a dotenv
    or env file that name a user otherwise (ALICE: alice, as --export names her)."""
    args = inv.args
    data = read_file(args.import_file, "the import file")
    text = utf8_text(data, f"the import file {args.import_file}")
    fmt = import_format(text, args.format)
    entries = parse_import(text, fmt)
    if fmt == "json":
        if args.prefix:
            raise ValidationError("--prefix goes with dotenv and env imports: JSON keys are users")
        return entries, {}
    prefix = check_prefix(args.prefix)
    if args.binary:
        entries = decode_base64_variables(entries)
    import_entries(args.service, entries)  # every bad entry refused before any AWS call
    existing = [entry.user for entry in inv.chain.list(args.service)]
    users = users_for_variables(args.service, entries, existing, prefix)
    mapped = {variable: user for variable, user in users.items() if variable != user}
    return {users[variable]: value for variable, value in entries.items()}, mapped


def import_file(inv: Invocation) -> int:
    """Save each entry of a JSON, dotenv or env file into a service."""
    args = inv.args
    mapping, mapped = _entries(inv)
    source = {user: variable for variable, user in mapped.items()}
    report = ImportReport()
    try:
        result = inv.chain.import_secrets(
            args.service, mapping, dry_run=args.dry_run, progress=report, comment=args.comment
        )
    except IncompleteImportError as err:
        if args.json:
            write_stdout(report.as_json(args.service))
        else:
            write_stdout("".join(f"not-written\t{shown(user)}\n" for user in err.not_written))
        err.hint = (
            f"every one of the {len(err.not_written)} not written is listed on stdout; "
            "run the same import again to write them: what is already equal is skipped"
        )
        raise
    except KeyboardInterrupt:
        if args.json:
            write_stdout(report.as_json(args.service))
        info(
            f"import into {args.service} interrupted: {len(report.written)} new versions "
            "written (more may have landed); run the same import again to finish it"
        )
        raise
    counts = f"{result.created} created, {result.changed} changed, {result.unchanged} unchanged"
    if args.json:
        write_stdout(report.as_json(args.service, mapped))
    if args.dry_run:
        planned = [(a, u) for u, a in result.actions.items() if a != "unchanged"]
        if not args.json:
            write_stdout("".join(
                f"{action}\t{shown(user)}" + (f"\tfrom {source[user]}" if user in source else "")
                + "\n" for action, user in planned
            ))  # fmt: skip
        info(f"dry run, nothing written: would be {counts}")
    else:
        info(f"imported into {args.service}: {counts}")
    return EXIT_OK


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
            ),
        ),
        Action(
            "exec",
            ("--exec",),
            "-- CMD [ARGS...]: run CMD with -e's secrets in its environment (must come last)",
            exec_command,
            needs="service",
            accepts=("prefix", "pristine", "allow_env", "tag", "binary", "skip_unrepresentable"),
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
            "--export: json (default), dotenv or env; --import: the same (default: json or "
            "dotenv, detected)",
            {"choices": ("json", "dotenv", "env")},
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
            "--import: show what would change, write nothing; --render: list what it reads",
        ),
        Option(
            ("--allow-env",),
            "--exec, --export: let a secret set NAME although it changes how programs run "
            "(PATH, LD_*, PYTHON*...); repeatable",
            {"action": "append", "metavar": "NAME"},
        ),
    ),
)
