"""--import-from: import a whole store (credstash, SSM Parameter Store, Secrets Manager) with
its versions, or --verify an import; the source is only ever read."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import CloudChainError, IncompleteImportError, ValidationError
from ..validation import shown
from .agent_refresh import refresh_agent
from .io import info, warn, write_stdout
from .spec import EXIT_CONFLICT, EXIT_ERROR, EXIT_OK, Action, Invocation, Option, Section

if TYPE_CHECKING:
    from ..migrate.mapping import Planned, Refused
    from ..migrate.run import Migration, Outcome, RowPlan


def _migration(inv: Invocation) -> Migration:
    """The import the flags describe, every flag checked before any AWS call."""
    from ..migrate.run import Migration
    from ..migrate.sources import parse_context, parse_rule, parse_source

    args = inv.args
    source = parse_source(args.import_from)
    rule = parse_rule(source, args.map)
    context = parse_context(args.source_context)
    if context and source.kind != "credstash":
        raise ValidationError("--source-context goes with a credstash source")
    if args.expand_json and source.kind != "secretsmanager":
        raise ValidationError("--expand-json goes with a secretsmanager source")
    if args.verify and args.dry_run:
        raise ValidationError("--verify writes nothing already: leave out --dry-run")
    return Migration(inv.chain, source, rule, context=context, expand_json=args.expand_json)


def _rows(inv: Invocation, migration: Migration) -> list[Planned]:
    """The rows to import; names that cannot be imported stop it unless --skip-invalid."""
    rows, refused = migration.plan()
    if refused:
        _list_refused(refused, inv.args.json)
        if not inv.args.skip_invalid:
            where = "above" if inv.args.json else "on stdout"
            raise ValidationError(
                f"{len(refused)} source names cannot be imported as they are (listed {where}); "
                "nothing was imported",
                hint="rename them at the source, choose another --map, or add --skip-invalid "
                "to import the rest",
            )
        warn(f"left out {len(refused)} source names that cannot be imported (--skip-invalid)")
    return rows


def _list_refused(refused: list[Refused], as_json: bool) -> None:
    if as_json:  # stdout holds one JSON document: the names go to stderr, one line each
        for r in refused:
            warn(f"cannot import {shown(r.name)}: {shown(r.reason)}")
    else:
        write_stdout("".join(f"invalid\t{shown(r.name)}\t{shown(r.reason)}\n" for r in refused))


def _line(plan: RowPlan) -> str:
    size = "?" if plan.size is None else str(plan.size)
    return (
        f"{plan.action}\t{shown(plan.row)}\tfrom {shown(plan.planned.secret.mapped_name)}\t"
        f"{len(plan.versions)} versions{' + pending' if plan.pending else ''}\t{size} bytes\n"
    )


def _counts(plans: list[RowPlan]) -> str:
    actions = [p.action for p in plans]
    return ", ".join(
        f"{actions.count(a)} {a}" for a in ("create", "append", "up-to-date", "conflict")
    )


def _report(args: Any, source: str, outcome: Outcome, not_written: tuple[str, ...] = ()) -> None:
    if args.json:
        write_stdout(
            json.dumps(
                {
                    "source": source,
                    "written": sorted(outcome.rows_written),
                    "versions_written": outcome.versions_written,
                    "already_imported": outcome.already_imported,
                    "skipped": sorted(outcome.skipped),
                    "not_written": list(not_written),
                },
                ensure_ascii=False,
            )
            + "\n"
        )
    for skipped in sorted(outcome.skipped):
        warn(f"skipped {shown(skipped)}")


def import_from(inv: Invocation) -> int:
    """Import every secret of another store, with its versions."""
    from ..migrate.run import Outcome

    args = inv.args
    migration = _migration(inv)
    workers = inv.chain.config.max_workers
    rows = _rows(inv, migration)
    if args.verify:
        return _verify(migration, rows, workers)
    plans = migration.preview(rows, workers, append=args.append)
    conflicts = [p for p in plans if p.action == "conflict"]
    if args.dry_run:
        if not args.json:
            write_stdout("".join(_line(p) for p in plans))
        else:
            write_stdout(json.dumps([_plan_json(p) for p in plans], ensure_ascii=False) + "\n")
        info(f"dry run, nothing written: from {migration.source}, {_counts(plans)}")
        return EXIT_OK
    if conflicts:
        if args.json:
            write_stdout(json.dumps([_plan_json(p) for p in conflicts], ensure_ascii=False) + "\n")
        else:
            write_stdout("".join(_line(p) for p in conflicts))
        info(
            f"error: {len(conflicts)} rows already hold versions that did not come from "
            f"{migration.source} (listed on stdout); nothing was imported"
        )
        info("hint: add --append to add the imported versions after theirs")
        return EXIT_CONFLICT
    outcome = Outcome()
    try:
        migration.run(plans, workers, append=args.append, outcome=outcome)
    except IncompleteImportError as err:
        _report(args, str(migration.source), outcome, err.not_written)
        if not args.json:
            write_stdout("".join(f"not-written\t{shown(row)}\n" for row in err.not_written))
        raise
    except KeyboardInterrupt:
        _report(args, str(migration.source), outcome)
        info(
            f"import from {migration.source} interrupted: {len(outcome.rows_written)} rows "
            "written (more may have landed); run the same import again to finish it"
        )
        raise
    finally:  # the agent forgets what landed, even when the import stopped part way
        written = set(outcome.rows_written)
        for service in sorted({p.planned.service for p in plans if p.row in written}):
            refresh_agent(args, service)
    _report(args, str(migration.source), outcome)
    info(
        f"imported from {migration.source}: {len(outcome.rows_written)} rows written "
        f"({outcome.versions_written} versions), {outcome.already_imported} versions already "
        f"imported, {len(outcome.skipped)} skipped"
    )
    if outcome.skipped and not args.skip_invalid:
        info(f"error: {len(outcome.skipped)} source versions could not be imported (named above)")
        return EXIT_ERROR
    return EXIT_OK


def _plan_json(plan: RowPlan) -> dict[str, Any]:
    return {
        "action": plan.action,
        "service": plan.planned.service,
        "user": plan.planned.user,
        "source": plan.planned.secret.origin,
        "versions": [v.version_id for v in plan.versions],
        "pending": plan.pending.version_id if plan.pending else None,
        "size": plan.size,
    }


def _verify(migration: Migration, rows: list[Planned], workers: int) -> int:
    mismatches = migration.verify(rows, workers)
    write_stdout(
        "".join(
            f"{m.problem}\t{shown(m.row)}\t{shown(m.source)}\tversion {shown(m.version_id)}\n"
            for m in mismatches
        )
    )
    if mismatches:
        raise CloudChainError(
            f"{len(mismatches)} imported versions from {migration.source} are missing, "
            "differ or are not current (listed on stdout; no value is shown)",
            hint="run the same import again to write what is missing; a not-current row "
            "needs the source's current value saved again",
        )
    info(f"verified {len(rows)} rows from {migration.source}: every imported version matches")
    return EXIT_OK


SECTION = Section(
    "import from another store",
    actions=(
        Action(
            "import-from",
            ("--import-from",),
            "import every secret and version of credstash[:TABLE], ssm:/PREFIX or "
            "secretsmanager[:PREFIX] (read-only on the source)",
            import_from,
            accepts=(
                "map",
                "source_context",
                "expand_json",
                "skip_invalid",
                "append",
                "verify",
                "dry_run",
                "json",
            ),
            kwargs={"dest": "import_from", "metavar": "SOURCE"},
        ),
    ),
    options=(
        Option(
            ("--map",),
            "--import-from: split:SEP (service before the first SEP; credstash's default "
            "split:.) or service:NAME (all into NAME)",
            {"metavar": "RULE"},
        ),
        Option(
            ("--source-context",),
            "--import-from credstash: the encryption context its secrets were stored with "
            "(repeatable)",
            {"action": "append", "metavar": "KEY=VALUE"},
        ),
        Option(
            ("--expand-json",),
            "--import-from secretsmanager: one secret per key of a JSON object value",
        ),
        Option(
            ("--skip-invalid",),
            "--import-from: import the rest when some source names or versions cannot be",
        ),
        Option(
            ("--append",),
            "--import-from: add imported versions after a row's own instead of refusing",
        ),
        Option(
            ("--verify",),
            "--import-from: compare every imported version with the source (values never shown)",
        ),
    ),
)
