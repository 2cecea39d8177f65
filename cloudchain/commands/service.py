"""Actions on a whole service: export, exec and import."""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..envfile import (
    check_loader_variables,
    check_prefix,
    env_names,
    parse_import,
    render,
    text_for_environment,
)
from ..errors import CloudChainError, IncompleteImportError
from ..validation import shown
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
    names = env_names(args.service, list(secrets), check_prefix(args.prefix))
    check_loader_variables(args.service, names, set(args.allow_env or ()))
    return names


def export(inv: Invocation) -> int:
    """Print or write every secret of a service."""
    args = inv.args
    fmt = args.format or "json"
    check_prefix(args.prefix)
    secrets = inv.export(args.service, tags_of(args.tag))
    names = {} if fmt == "json" else _variables(inv, secrets)
    text = render(fmt, secrets, names)  # fully rendered before any output: no partial export
    written = f"exported {len(secrets)} secrets of {args.service} to {args.output}"
    write_output(args.output, text, written)
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
    additions = {name: text_for_environment(name, secrets[user]) for user, name in names.items()}
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

    def as_json(self, service: str) -> str:
        with self._lock:
            written = set(self.written)
            report = {
                "service": service,
                "written": sorted(written),
                "unchanged": sorted(u for u, a in self.planned.items() if a == "unchanged"),
                "not_written": sorted(
                    u for u, a in self.planned.items() if a != "unchanged" and u not in written
                ),
            }
        return json.dumps(report, ensure_ascii=False) + "\n"


def import_file(inv: Invocation) -> int:
    """Save each entry of a JSON or dotenv file into a service."""
    args = inv.args
    data = read_file(args.import_file, "the import file")
    mapping = parse_import(utf8_text(data, f"the import file {args.import_file}"), args.format)
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
        write_stdout(report.as_json(args.service))
    if args.dry_run:
        planned = [(a, u) for u, a in result.actions.items() if a != "unchanged"]
        if not args.json:
            write_stdout("".join(f"{action}\t{shown(user)}\n" for action, user in planned))
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
            accepts=("format", "output", "prefix", "allow_env", "tag"),
        ),
        Action(
            "exec",
            ("--exec",),
            "-- CMD [ARGS...]: run CMD with -e's secrets in its environment (must come last)",
            exec_command,
            needs="service",
            accepts=("prefix", "pristine", "allow_env", "tag"),
        ),
        Action(
            "import",
            ("--import",),
            "save a JSON object {user: secret} or a dotenv file ('-': stdin) into -e",
            import_file,
            needs="service",
            changes="service",
            accepts=("format", "dry_run", "json", "comment"),
            kwargs={"dest": "import_file", "metavar": "FILE"},
        ),
    ),
    options=(
        Option(
            ("--format",),
            "--export: json (default), dotenv or env; --import: json or dotenv (default: detect)",
            {"choices": ("json", "dotenv", "env")},
        ),
        Option(
            ("-o", "--output"),
            "--export, --render: write FILE (mode 0600, replaced atomically)",
            {"metavar": "FILE"},
        ),
        Option(
            ("--prefix",),
            "--export, --exec: prefix for variable names",
            {"default": "", "metavar": "PREFIX"},
        ),
        Option(("--pristine",), "--exec: start from an empty environment"),
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
