"""--import: read a JSON, dotenv or env file, map its names onto the service's users, save
it, and report what was (and was not) written."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import IncompleteImportError, ValidationError
from ..formats import (
    check_prefix,
    decode_base64_variables,
    import_format,
    parse_import,
    users_for_variables,
)
from ..validation import import_entries, shown
from .io import info, read_file, utf8_text, write_stdout
from .spec import EXIT_OK, Invocation

if TYPE_CHECKING:
    from ..results import Secret


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
