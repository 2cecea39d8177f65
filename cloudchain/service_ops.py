"""Operations over a whole service or table: list, export, import, re-encryption and IAM
policy.

ServiceOperations is given what it needs (the configuration, the regions, whose home place
holds the store, the AWS call wrapper and the clients, the writer, and two callbacks of
CloudChain's: the key alias check and cache invalidation), so it reads on its own; CloudChain
composes it and exposes its methods. Listings and exports fail over as one read each; imports
and re-encryption use the home region.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .config import Config
from .errors import CloudChainError, IncompleteImportError
from .layout import StoredItem
from .parallel import parallel_map
from .regions import Place, Regions
from .results import Entry, ImportResult, ReencryptResult, Secret, Versioned, secret_value
from .row_changes import RowChanges
from .schedule import due_at, iso
from .store import expired
from .validation import (
    check_choice,
    check_comment,
    check_service,
    check_tags,
    import_entries,
    shown,
)
from .writer import Why

# progress(user, event) of an import: first the plan of each entry ("create", "change" or
# "unchanged"), then "written" as each new version lands.
ImportProgress = Callable[[str, str], None]


# How many rows an error line names before it only counts the rest.
NAMED_ROWS = 10


def _some(users: tuple[str, ...]) -> str:
    """Name users on one line, the first NAMED_ROWS of them, then how many more."""
    named = ", ".join(shown(u) for u in users[:NAMED_ROWS])
    more = len(users) - NAMED_ROWS
    return named + (f" and {more} more" if more > 0 else "")


class ServiceOperations:
    """Export, import, re-encryption and policy over one table."""

    def __init__(
        self,
        config: Config,
        regions: Regions,
        writer: RowChanges,
        require_key: Callable[[str], str],
        forget: Callable[[str, str], None],
    ) -> None:
        self._config = config
        self._regions = regions  # reads fail over through it; writes use its home place
        self._home = regions.home
        self._store, self._aws, self._clients = self._home.store, self._home.aws, self._home.clients
        self._writer = writer
        self._require_key = require_key
        self._forget = forget

    def list(
        self, service: str | None, *, tags: Mapping[str, str] | None, deleted: bool
    ) -> Iterator[Entry]:
        """Yield the secrets (or the deleted ones) with all of tags, sorted."""
        if service is not None:
            service = check_service(service)
        wanted = check_tags(tags)
        where = f" of service {service}" if service else ""
        rows = self._regions.read(
            f"cannot list secrets{where} in", lambda store: store.summaries(service)
        )
        now = time.time()
        for row in rows:
            if row.deleted != deleted or (row.deleted and expired(row.expires_at, now)):
                continue
            if any(row.tags.get(k) != v for k, v in wanted.items()):
                continue
            when = (row.saved_at, row.saved_by, row.expires_at) if deleted else (None,) * 3
            due = due_at(row.saved_at, row.rotate_every, row.not_after)
            yield Entry(row.service, row.user, row.legacy, row.tags, *when, row.rotate_every,
                        row.not_after, iso(due[0]) if due else None)  # fmt: skip

    def export(self, service: str, *, tags: Mapping[str, str] | None) -> dict[str, Versioned]:
        """Return every current secret of service (with all of tags) and its version, keyed by
        user, sorted: all from one region (the first that answers)."""
        service = check_service(service)
        wanted = check_tags(tags)
        return self._regions.read_place(lambda place: self._export(place, service, wanted))

    def _export(
        self, place: Place, service: str, wanted: Mapping[str, str]
    ) -> dict[str, Versioned]:
        items = [
            i
            for i in self._service_items(service, place)
            if all(i.tags.get(k) == v for k, v in wanted.items())
        ]
        plaintexts = parallel_map(
            lambda item: self._current_plaintext(item, place), items, self._config.max_workers
        )
        table = self._config.tablename
        return {
            i.user: Versioned(
                secret_value(p, binary, f"{service}/{i.user} in table '{table}'"),
                i.current.version,
            )
            for i, (p, binary) in zip(items, plaintexts, strict=True)
        }

    def import_secrets(
        self,
        service: str,
        mapping: Mapping[str, Secret],
        dry_run: bool = False,
        *,
        progress: ImportProgress | None = None,
        comment: str | None = None,
    ) -> ImportResult:
        """Save each {user: secret} whose value differs from the current one, in parallel."""
        service = check_service(service)
        why = Why("import", check_comment(comment))
        entries = import_entries(service, mapping)
        key = None if dry_run else self._require_key(service)
        items = [i for i in self._service_items(service, self._home) if i.user in entries]
        current = parallel_map(
            lambda item: self._current_plaintext(item, self._home), items, self._config.max_workers
        )
        existing = {
            item.user: plaintext for item, (plaintext, _) in zip(items, current, strict=True)
        }
        actions = {
            user: "create" if user not in existing
            else "unchanged" if existing[user] == entries[user][0]
            else "change"
            for user in sorted(entries)
        }  # fmt: skip
        report = progress or (lambda user, event: None)
        for user, action in actions.items():
            report(user, action)
        if key is None:
            return ImportResult(actions=actions)
        writes = [user for user, action in actions.items() if action != "unchanged"]
        written: list[str] = []
        lock = threading.Lock()

        def write(user: str) -> None:
            data, binary = entries[user]
            try:
                self._aws(
                    f"cannot save {service}/{user} in",
                    lambda: self._writer.save(service, user, data, key, binary=binary, why=why),
                )
            finally:
                self._forget(service, user)
            with lock:
                written.append(user)
            report(user, "written")

        try:
            parallel_map(write, writes, self._config.max_workers)
        except CloudChainError as err:
            result = ImportResult(actions=actions, written=tuple(sorted(written)))
            missing = result.not_written
            raise IncompleteImportError(
                f"import into {service} stopped: {len(result.written)} of {len(writes)} new "
                f"versions written, {len(missing)} not written ({_some(missing)}); {err}",
                written=result.written,
                not_written=missing,
                hint="run the same import again to write the rest: what is already equal "
                "is skipped",
            ) from err
        return ImportResult(actions=actions, written=tuple(sorted(written)))

    @staticmethod
    def _service_items(service: str, place: Place) -> builtins.list[StoredItem]:
        return place.run(
            f"cannot query service {service} in", lambda store: store.service_items(service)
        )

    @staticmethod
    def _current_plaintext(item: StoredItem, place: Place) -> tuple[bytes, bool]:
        return place.run(
            f"cannot decrypt {item.service}/{item.user} version {item.current.version} in",
            lambda store: store.decrypt(item.service, item.user, item.current),
        )

    # -- the whole table -----------------------------------------------------------------------

    def reencrypt(
        self,
        service: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        *,
        on_row: Callable[[str, str, str], None] | None = None,
    ) -> ReencryptResult:
        """Re-encrypt every retained version of every row (or service's) under the key alias.

        progress(done, total) follows the count; on_row(service, user, outcome) names each
        row as it is settled: "reencrypted", "current" or "failed".
        """
        if service is not None:
            service = check_service(service)
        alias = self._require_key(service or "the table")
        key_arn = self._aws(f"cannot resolve key {alias} for", lambda: self._store.key_arn(alias))
        rows = self._aws(
            "cannot list the rows of",
            lambda: [(r.service, r.user) for r in self._store.summaries(service)],
        )
        done = iter(range(1, len(rows) + 1))
        lock = threading.Lock()

        def one(row: tuple[str, str]) -> str:
            outcome = "failed"
            try:
                moved = self._aws(
                    f"cannot re-encrypt {row[0]}/{row[1]} in",
                    lambda: self._writer.reencrypt(row[0], row[1], alias, key_arn),
                )
                outcome = "reencrypted" if moved else "current"
            except CloudChainError:
                pass
            finally:
                self._forget(*row)
            with lock:
                count = next(done)
            if on_row is not None:
                on_row(row[0], row[1], outcome)
            if progress is not None:
                progress(count, len(rows))
            return outcome

        outcomes = parallel_map(one, rows, self._config.max_workers)
        return ReencryptResult(
            reencrypted=outcomes.count("reencrypted"),
            current=outcomes.count("current"),
            failed=tuple(
                f"{s}/{u}" for (s, u), o in zip(rows, outcomes, strict=True) if o == "failed"
            ),
        )

    def policy(
        self, service: str, access: str, *, account: str | None = None, key_arn: str | None = None
    ) -> dict[str, Any]:
        """Return an IAM policy letting a role read (or read and write) only service's secrets.

        The account comes from STS GetCallerIdentity and the key ARN from KMS DescribeKey on
        the key alias, unless given; with both given, no AWS call is made.
        """
        from .policy import ACCESS, build_policy

        service = check_service(service)
        access = check_choice(access, "access", ACCESS)
        if key_arn is None:
            alias = self._require_key(service)
            key_arn = self._aws(
                f"cannot resolve key {alias} for", lambda: self._store.key_arn(alias)
            )
        if account is None:
            sts = self._clients.get("sts")
            account = self._aws(
                "cannot read the account (STS GetCallerIdentity) for",
                lambda: str(sts.get_caller_identity()["Account"]),
            )
        return build_policy(
            service,
            access,
            region=self._clients.region,
            account=account,
            table=self._config.tablename,
            key_arn=key_arn,
            replica_regions=self._config.replica_regions,
        )
