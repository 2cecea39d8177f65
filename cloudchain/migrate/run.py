"""An import from another store: list the source (no decryption), map its names, then per row
read the target, read only the source versions still to import, and write them in one
conditional write; or compare every imported version with its source (--verify)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import layout
from ..calls import AwsCalls
from ..errors import CloudChainError, IncompleteImportError
from ..parallel import parallel_map
from ..store import live
from ..validation import secret_bytes
from .mapping import Planned, Refused, plan
from .model import SkippedVersion, SourceSecret, SourceVersion
from .sources import NameRule, SourceSpec
from .target import (
    ImportWriter,
    Incoming,
    foreign_versions,
    pending_to_import,
    still_to_import,
)

if TYPE_CHECKING:
    from ..chain import CloudChain


@dataclass(frozen=True)
class RowPlan:
    """What an import would do to one row: create, append, up-to-date or conflict."""

    planned: Planned
    action: str
    versions: tuple[SourceVersion, ...]  # still to import, oldest first
    held: int  # source versions the row already holds
    keeps: int  # versions the row keeps: older ones to import would be dropped at once
    pending: SourceVersion | None = None  # to import as the row's pending version

    @property
    def row(self) -> str:
        """The row, as service/user."""
        return f"{self.planned.service}/{self.planned.user}"

    @property
    def size(self) -> int | None:
        """Bytes to import, as stored at the source; None when the source does not say."""
        sizes = [v.size for v in self.versions]
        return None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)


@dataclass
class Outcome:
    """What an import did, collected from its workers (any thread)."""

    rows_written: list[str] = field(default_factory=list)
    versions_written: int = 0
    already_imported: int = 0
    conflicts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name version id: why", no value
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: Any) -> None:
        with self._lock:
            for name, amount in counts.items():
                value = getattr(self, name)
                if isinstance(value, list):
                    value.extend(amount)
                else:
                    setattr(self, name, value + amount)


@dataclass(frozen=True)
class Mismatch:
    """A source version whose cloudchain copy is missing or differs (never the values)."""

    row: str
    source: str
    version_id: str
    problem: str  # "missing", "differs" or "not-current"


class Migration:
    """One --import-from: a source, how its names map, and the CloudChain to write into."""

    def __init__(
        self,
        chain: CloudChain,
        source: SourceSpec,
        rule: NameRule,
        *,
        context: Mapping[str, str] | None = None,
        expand_json: bool = False,
    ) -> None:
        self._chain = chain
        self.source = source
        self._rule = rule
        self._context = dict(context or {})
        self._expand_json = expand_json

    def _reader(self) -> Any:
        clients = self._chain._clients
        places = {
            "credstash": f"credstash table '{self.source.where}'",
            "ssm": "SSM Parameter Store",
        }
        place = places.get(self.source.kind, "Secrets Manager")
        aws = AwsCalls(self._chain.config.tablename, clients, place=place)
        if self.source.kind == "credstash":
            from .credstash import CredstashTable

            return CredstashTable(
                clients.get("dynamodb"), clients.get("kms"), aws, self.source.where, self._context
            )
        if self.source.kind == "ssm":
            from .ssm import ParameterStore

            return ParameterStore(clients.get("ssm"), aws, self.source.where)
        from .secretsmanager import SecretsManager

        return SecretsManager(
            clients.get("secretsmanager"), aws, self.source.where or None, self._expand_json
        )

    def plan(self) -> tuple[list[Planned], list[Refused]]:
        """List the source (decrypting nothing) and map each name to its row."""
        secrets: list[SourceSecret] = self._reader().secrets()
        return plan(secrets, self._rule)

    def _row(self, planned: Planned) -> layout.StoredItem | None:
        store = self._chain._store
        return self._chain._aws(
            f"cannot read {planned.service}/{planned.user} from",
            lambda: store.get(planned.service, planned.user),
        )

    def preview(self, rows: list[Planned], workers: int, append: bool) -> list[RowPlan]:
        """What importing each row would do, from the target rows as they are now."""

        history_size = self._chain.config.history_size

        def one(planned: Planned) -> RowPlan:
            row = live(self._row(planned))
            todo = tuple(still_to_import(row, planned.secret))
            pending = pending_to_import(row, planned.secret)
            held = sum(1 for v in planned.secret.versions if not v.pending) - len(todo)
            if foreign_versions(row, planned.secret.origin) and not append:
                action = "conflict"
            elif not todo and pending is None:
                action = "up-to-date"
            else:
                action = "append" if row is not None else "create"
            keeps = (row.retention if row is not None else None) or history_size
            return RowPlan(planned, action, todo, held, keeps, pending)

        return parallel_map(one, rows, workers)

    def run(
        self,
        plans: list[RowPlan],
        workers: int,
        *,
        append: bool,
        outcome: Outcome,
    ) -> Outcome:
        """Import every planned row, in parallel; a failure stops every row not yet started
        and raises IncompleteImportError naming the rows not written."""
        chain = self._chain
        writer = self._writer()
        chain._identity.prefetch()
        outcome.add(already_imported=sum(p.held for p in plans))

        def one(plan: RowPlan) -> None:
            planned = plan.planned
            if plan.action in ("conflict", "up-to-date"):
                return
            key = chain._require_key(planned.service)
            skipped: list[str] = []

            def read(version: SourceVersion) -> Incoming | None:
                where = f"{planned.secret.mapped_name} version {version.version_id}"
                try:
                    value = version.read()
                    plaintext, binary = secret_bytes(value, planned.service, planned.user)
                except (SkippedVersion, ValueError) as why:  # ValueError: empty, too large
                    skipped.append(f"{where}: {why}")
                    return None
                return Incoming(version, plaintext, binary)

            # Older versions than the row keeps would be dropped by the write: not even read.
            incoming = [entry for v in plan.versions[-plan.keeps :] if (entry := read(v))]
            pending = read(plan.pending) if plan.pending is not None else None
            outcome.add(skipped=skipped)
            if not incoming and pending is None:
                return

            def write() -> int:
                return writer.append(
                    planned.service, planned.user, planned.secret, incoming, key,
                    append=append, pending=pending,
                )  # fmt: skip

            try:
                doing = f"cannot import {plan.row} into"
                written = chain._regions.write(lambda: chain._aws(doing, write))
            finally:
                chain._forget(planned.service, planned.user)
            outcome.add(rows_written=[plan.row], versions_written=written)

        try:
            parallel_map(one, plans, workers)
        except CloudChainError as err:
            done = set(outcome.rows_written)
            missing = tuple(
                p.row
                for p in plans
                if p.row not in done and p.action not in ("conflict", "up-to-date")
            )
            raise IncompleteImportError(
                f"import from {self.source} stopped: {len(done)} rows written "
                f"({outcome.versions_written} versions), {len(missing)} not written; {err}",
                written=tuple(sorted(done)),
                not_written=missing,
                hint="fix the cause and run the same import again: what it already imported "
                "is skipped",
            ) from err
        return outcome

    def _writer(self) -> ImportWriter:
        chain, config = self._chain, self._chain.config
        return ImportWriter(
            chain._store,
            saved_by=chain._identity.arn,
            history_size=config.history_size,
            recovery_days=config.recovery_days,
            conflict_deadline=config.read_timeout,
            new_rotate_every=config.rotate_every,
        )

    def verify(self, rows: list[Planned], workers: int) -> list[Mismatch]:
        """Compare every source version with its imported copy, by value, never shown: a
        version after the newest copy is missing; one older, without a copy, was pruned by
        the row's retention or skipped by the import, and is not compared."""
        store, aws = self._chain._store, self._chain._aws

        def one(planned: Planned) -> list[Mismatch]:
            where = f"{planned.service}/{planned.user}"
            origin = planned.secret.origin
            row = live(self._row(planned))
            held = row.all_versions if row else ()
            copies = {v.source_version: v for v in held if v.source == origin}
            missing = [v.version_id for v in still_to_import(row, planned.secret)]
            pending = pending_to_import(row, planned.secret)
            missing += [pending.version_id] if pending is not None else []
            found = [Mismatch(where, origin, vid, "missing") for vid in missing]
            # Every version copied, but the row's current one is not the source's (Secrets
            # Manager rolled AWSCURRENT back to an older version): readers get another value.
            # (A pending version imported and then promoted here is newer, not a rollback.)
            latest = [v.version_id for v in planned.secret.versions if not v.pending][-1:]
            staged = {v.version_id for v in planned.secret.versions if v.pending}
            if (
                row is not None
                and latest
                and not missing
                and row.current.source == origin
                and row.current.source_version not in (latest[0], *staged)
            ):
                found.append(Mismatch(where, origin, latest[0], "not-current"))
            for version in planned.secret.versions:
                copy = copies.get(version.version_id)
                if copy is None:
                    continue
                try:
                    expected = secret_bytes(version.read(), planned.service, planned.user)
                except (SkippedVersion, ValueError):
                    continue  # never importable: the import reported it
                decrypt = functools.partial(store.decrypt, planned.service, planned.user, copy)
                got = aws(f"cannot read {where} from", decrypt)
                if got != expected:
                    found.append(Mismatch(where, origin, version.version_id, "differs"))
            return found

        return [m for found in parallel_map(one, rows, workers) for m in found]
