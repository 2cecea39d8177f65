"""Operations over a whole service or table: export, import, re-encryption and IAM policy.

ServiceOperations is a mixin of CloudChain: it uses CloudChain's configuration, store, error
translation and cache, and keeps chain.py to the operations on one secret.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import CloudChainError
from .results import ImportResult, ReencryptResult, Secret
from .validation import check_choice, check_row, check_service, secret_bytes

if TYPE_CHECKING:
    from .clients import Clients
    from .config import Config
    from .store import SecretStore
    from .table import StoredItem

T = TypeVar("T")


class ServiceOperations:
    """Export, import, re-encryption and policy, for CloudChain."""

    config: Config
    _store: SecretStore
    _clients: Clients

    if TYPE_CHECKING:
        # Provided by CloudChain.

        def _aws(self, doing: str, call: Callable[[], T]) -> T: ...

        def _require_key(self, service: str) -> str: ...

        def _value(self, service: str, user: str, plaintext: bytes, binary: bool) -> Secret: ...

        def _forget(self, service: str, user: str) -> None: ...

    def export(self, service: str) -> dict[str, Secret]:
        """Return every current secret of service, keyed by user, sorted.

        One paginated Query and parallel KMS decrypts; if any secret fails, raise an error
        naming it and return nothing.
        """
        from .parallel import parallel_map

        service = check_service(service)
        items = self._service_items(service)
        plaintexts = parallel_map(self._current_plaintext, items, self.config.max_workers)
        return {
            i.user: self._value(service, i.user, p, i.current.binary)
            for i, p in zip(items, plaintexts)
        }

    def import_secrets(
        self, service: str, mapping: Mapping[str, Secret], dry_run: bool = False
    ) -> ImportResult:
        """Save each {user: secret} whose value differs from the current one, in parallel.

        Every entry is checked before the first write: one bad entry writes nothing. An
        entry equal to the current value is left alone, so it gets no new version.
        """
        from .parallel import parallel_map

        service = check_service(service)
        entries = {
            check_row(service, user)[1]: secret_bytes(value, service, user)
            for user, value in mapping.items()
        }
        plaintexts = {user: data for user, (data, _) in entries.items()}
        key = None if dry_run else self._require_key(service)
        items = [i for i in self._service_items(service) if i.user in plaintexts]
        current = parallel_map(self._current_plaintext, items, self.config.max_workers)
        existing = {item.user: value for item, value in zip(items, current)}
        actions = {
            user: "create" if user not in existing
            else "unchanged" if existing[user] == plaintexts[user]
            else "change"
            for user in sorted(plaintexts)
        }  # fmt: skip
        if key is not None:

            def write(user: str) -> int:
                try:
                    return self._aws(
                        f"cannot save {service}/{user} in",
                        lambda: self._store.save(
                            service, user, entries[user][0], key, None, entries[user][1]
                        ),
                    )
                finally:
                    self._forget(service, user)

            writes = [user for user, action in actions.items() if action != "unchanged"]
            parallel_map(write, writes, self.config.max_workers)
        return ImportResult(actions=actions)

    def _service_items(self, service: str) -> builtins.list[StoredItem]:
        return self._aws(
            f"cannot query service {service} in", lambda: self._store.service_items(service)
        )

    def _current_plaintext(self, item: StoredItem) -> bytes:
        return self._aws(
            f"cannot decrypt {item.service}/{item.user} in",
            lambda: self._store.decrypt(item.service, item.user, item.current),
        )

    # -- the whole table -----------------------------------------------------------------------

    def reencrypt(
        self, service: str | None = None, progress: Callable[[int, int], None] | None = None
    ) -> ReencryptResult:
        """Re-encrypt every retained version of every secret (or service's) under the
        configured key alias, and move legacy rows to the row-bound context.

        KMS ReEncrypt moves direct ciphertexts, and envelope data keys are re-wrapped, so no
        plaintext leaves KMS. Each row is written with a condition, so a concurrent save is
        never overwritten. Idempotent: rows already under the key count as current. A row
        that fails is counted and named, and the others go on.
        """
        from .parallel import parallel_map

        if service is not None:
            service = check_service(service)
        alias = self._require_key(service or "the table")
        key_arn = self._aws(f"cannot resolve key {alias} for", lambda: self._store.key_arn(alias))
        rows = self._aws("cannot list the rows of", lambda: self._store.all_keys(service))
        done = iter(range(1, len(rows) + 1))

        def one(row: tuple[str, str]) -> str:
            outcome = "failed"
            try:
                moved = self._aws(
                    f"cannot re-encrypt {row[0]}/{row[1]} in",
                    lambda: self._store.reencrypt(row[0], row[1], alias, key_arn),
                )
                outcome = "reencrypted" if moved else "current"
            except CloudChainError:
                pass
            finally:
                self._forget(*row)
                if progress is not None:
                    progress(next(done), len(rows))
            return outcome

        outcomes = parallel_map(one, rows, self.config.max_workers)
        return ReencryptResult(
            reencrypted=outcomes.count("reencrypted"),
            current=outcomes.count("current"),
            failed=tuple(f"{s}/{u}" for (s, u), o in zip(rows, outcomes) if o == "failed"),
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
            table=self.config.tablename,
            key_arn=key_arn,
        )
