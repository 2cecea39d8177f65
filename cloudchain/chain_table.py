"""CloudChain's operations over a whole service or the table (list, export, import,
re-encryption, IAM policy, setup): each delegates to service_ops.ServiceOperations or
provision.py, built on first use."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .chain_parts import ChainParts
from .results import Entry, ImportResult, ReencryptResult, Secret, SetupResult, Versioned
from .validation import check_seconds, check_service, check_tags

if TYPE_CHECKING:
    from .changes import ServiceMarks
    from .schedule import DueSecret


class TableOperations(ChainParts):
    """CloudChain's methods over many secrets."""

    def list(
        self,
        service: str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        deleted: bool = False,
    ) -> Iterator[Entry]:
        """Yield every secret's name and tags, or one service's, sorted; never reads values
        and never calls KMS. tags: only secrets with all of them. deleted: only deleted
        secrets (with when, by whom, and until when they can be restored), instead of none."""
        return self._service.list(service, tags=tags, deleted=deleted)

    def due(
        self,
        service: str | None = None,
        *,
        within: float | None = None,
        tags: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> builtins.list[DueSecret]:
        """Return the secrets (or service's, with all of tags) due for rotation now or within
        `within` seconds (default 7 days), the longest overdue first. One projection Query or
        Scan, as list() makes; never a value, never a KMS call."""
        from .schedule import DEFAULT_WITHIN, due_secrets

        if service is not None:
            service = check_service(service)
        wanted = check_tags(tags)
        window = DEFAULT_WITHIN if within is None else check_seconds(within, "within", zero_ok=True)
        where = f" of service {service}" if service else ""
        rows = self._regions.read(
            f"cannot list secrets{where} in", lambda store: store.summaries(service)
        )
        wanted_rows = (r for r in rows if all(r.tags.get(k) == v for k, v in wanted.items()))
        return due_secrets(wanted_rows, within=window, now=now)

    def export(self, service: str, *, tags: Mapping[str, str] | None = None) -> dict[str, Secret]:
        """Return every current secret of service (with all of tags, if given), keyed by
        user, sorted.

        One paginated Query and parallel KMS decrypts; if any secret fails, raise an error
        naming it and return nothing.
        """
        return {user: v.value for user, v in self.export_versioned(service, tags=tags).items()}

    def export_versioned(
        self, service: str, *, tags: Mapping[str, str] | None = None
    ) -> dict[str, Versioned]:
        """Return what export() does, with the version number of each secret."""
        return self._service.export(service, tags=tags)

    def change_check(self, service: str) -> ServiceMarks:
        """What each row of service is now (version, revision, tags; no value): one paginated
        Query with a projection, and no KMS call. Compare two checks with since()."""
        from . import changes

        service = check_service(service)
        return self._regions.read(
            f"cannot check service {service} for changes in",
            lambda store: changes.check(store.dynamodb, store.tablename, service),
        )

    def import_secrets(
        self,
        service: str,
        mapping: Mapping[str, Secret],
        dry_run: bool = False,
        *,
        progress: Callable[[str, str], None] | None = None,
        comment: str | None = None,
    ) -> ImportResult:
        """Save each {user: secret} whose value differs from the current one, in parallel.

        Every entry is checked before the first write: one bad entry writes nothing. An
        entry equal to the current value is left alone, so it gets no new version.
        progress(user, outcome) is called as each entry is settled. If a write fails, the
        writes not yet started are cancelled and IncompleteImportError says which landed.
        Each new version records the action "import" and comment.
        """
        self._identity.prefetch()
        return self._regions.write(
            lambda: self._service.import_secrets(
                service, mapping, dry_run, progress=progress, comment=comment
            )
        )

    def reencrypt(
        self,
        service: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        *,
        on_row: Callable[[str, str, str], None] | None = None,
    ) -> ReencryptResult:
        """Re-encrypt every retained version of every secret (or service's) under the
        configured key alias, and bind every version to its row, version and type.

        A row that fails is counted and named, and the others go on. progress(done, total)
        follows the count; on_row(service, user, outcome) names each row as it is settled.
        """
        return self._regions.write(
            lambda: self._service.reencrypt(service, progress, on_row=on_row)
        )

    def policy(
        self, service: str, access: str, *, account: str | None = None, key_arn: str | None = None
    ) -> dict[str, Any]:
        """Return an IAM policy letting a role read (or read and write) only service's secrets."""
        return self._service.policy(service, access, account=account, key_arn=key_arn)

    def setup(self, create_key: bool = False) -> SetupResult:
        """Create the table if missing, with TTL on ExpiresAt (deleted secrets expire), and,
        with create_key, the KMS key behind the alias. With replica_regions, the table becomes
        a global table replicated there (with streams), and the key a multi-Region key
        replicated there under the same alias. What exists is left alone."""
        from . import provision

        return self._aws("cannot set up", provision.plan(self._clients, self.config, create_key))
