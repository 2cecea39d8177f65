"""The writes of one secret (save, rollback, delete, undelete, purge, tags): each checks its
input before any AWS call, then runs through the row writer, translated, home region only."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from .chain_parts import ChainParts
from .errors import SecretNotFoundError, ValidationError
from .results import Deleted, Secret
from .schedule import KEEP, Keep, check_not_after, check_rotate_every
from .validation import (
    check_comment,
    check_new_row,
    check_row,
    check_stage,
    check_tag_key,
    check_tags,
    check_version,
    check_whole,
    secret_bytes,
)

if TYPE_CHECKING:
    from .writer import Why

T = TypeVar("T")


def _why(action: str, comment: str | None) -> Why:
    """How and why a write makes its version, its comment checked before any AWS call."""
    from .writer import Why  # the write side, imported only by a process that writes

    return Why(action, check_comment(comment))


class SecretWrites(ChainParts):
    """CloudChain's writes of one secret."""

    def _writing(self, doing: str, service: str, user: str, call: Callable[[], T]) -> T:
        """Run a write: who is writing is asked of STS meanwhile, errors are translated, and
        the row is dropped from the cache whatever happens."""
        self._identity.prefetch()
        try:
            return self._regions.write(lambda: self._aws(doing, call))
        finally:
            self._forget(service, user)

    def save(
        self,
        service: str,
        user: str,
        secret: Secret,
        *,
        expect_version: int | None = None,
        history_size: int | None = None,
        comment: str | None = None,
        tags: Mapping[str, str] | None = None,
        untag: Collection[str] = (),
        rotate_every: float | Keep | None = KEEP,
        not_after: str | datetime | None = None,
        stage: str = "current",
        replace_pending: bool = False,
    ) -> int:
        """Save secret as a new version of service/user and return its version number.

        With expect_version, save only if the current version is that number (0: only if the
        secret does not exist yet); otherwise raise VersionConflictError and write nothing.
        A str is stored as text and bytes as bytes, and each reads back as what it was.
        history_size changes how many versions this secret keeps from now on; without it,
        the secret keeps what it recorded (a new one: the configured history_size). comment
        says why, in the version; tags are set, and untag removed, on the secret.
        rotate_every (seconds; None: no schedule) sets the secret's rotation period, which is
        otherwise kept (a new secret: the configured rotate_every); not_after is the new
        value's hard expiry (ISO 8601 or a datetime, UTC when naive).
        stage="pending" saves it as the pending version of an existing secret instead, which
        no reader of the current value sees until promote(); if one is pending already, raise
        VersionConflictError unless replace_pending.
        """
        service, user = check_new_row(service, user)
        plaintext, binary = secret_bytes(secret, service, user)
        if check_stage(stage, ("current", "pending")) == "pending":
            if (
                expect_version is not None
                or history_size is not None
                or tags
                or untag
                or (not isinstance(rotate_every, Keep))
            ):
                raise ValidationError(
                    "a pending version takes no expect_version, history_size, tags or rotate_every"
                )
            key, why = self._require_key(service), _why("save", comment)
            expiry = check_not_after(not_after)
            return self._writing(
                f"cannot stage {service}/{user} with key {key} in", service, user,
                lambda: self._writer.save_pending(
                    service, user, plaintext, key, binary=binary, why=why,
                    replace_pending=replace_pending, not_after=expiry,
                ),
            )  # fmt: skip
        if expect_version is not None:
            check_version(expect_version, minimum=0)
        if history_size is not None:
            check_whole(history_size, "history_size")
        why = _why("save", comment)
        tags, untag = check_tags(tags), [check_tag_key(k) for k in untag]
        period = (
            rotate_every if isinstance(rotate_every, Keep) else check_rotate_every(rotate_every)
        )
        expiry = check_not_after(not_after)
        key = self._require_key(service)
        return self._writing(
            f"cannot save {service}/{user} with key {key} in",
            service,
            user,
            lambda: self._writer.save(
                service, user, plaintext, key, expect_version=expect_version, binary=binary,
                history_size=history_size, why=why, tags=tags, untag=untag,
                rotate_every=period, not_after=expiry,
            ),
        )  # fmt: skip

    def rollback(self, service: str, user: str, version: int, *, comment: str | None = None) -> int:
        """Save version's value of service/user as a new version and return its number."""
        service, user = check_row(service, user)
        check_version(version)
        why = _why("rollback", comment)
        key = self._require_key(service)

        def roll() -> int:
            # The value comes back with its own hard expiry, if it had one.
            stored = self._store.version_of(self._store.load_secret(service, user), version)
            plaintext, binary = self._store.decrypt(service, user, stored)
            return self._writer.save(
                service, user, plaintext, key, binary=binary, why=why, not_after=stored.not_after
            )

        return self._writing(
            f"cannot roll back {service}/{user} to version {version} in", service, user, roll
        )

    def delete(self, service: str, user: str, *, comment: str | None = None) -> Deleted:
        """Delete the secret of service/user, recoverably for recovery_days: reads treat it
        as absent, undelete() restores it, purge() destroys it at once."""
        service, user = check_row(service, user)
        why = _why("delete", comment)
        return self._writing(
            f"cannot delete {service}/{user} from",
            service,
            user,
            lambda: self._writer.delete(service, user, why),
        )

    def undelete(self, service: str, user: str, *, comment: str | None = None) -> int:
        """Restore a deleted secret's last value as a new version and return its number."""
        service, user = check_row(service, user)
        why = _why("undelete", comment)
        key = self._require_key(service)

        def restore() -> int:
            item = self._store.load(service, user)
            last = next((v for v in item.history if not v.deleted), None)
            if not item.deleted or last is None:
                raise SecretNotFoundError(f"no deleted secret {service}/{user} to restore")
            plaintext, binary = self._store.decrypt(service, user, last)
            return self._writer.save(
                service, user, plaintext, key, binary=binary, why=why, only_if_deleted=True,
                not_after=last.not_after,
            )  # fmt: skip

        return self._writing(f"cannot undelete {service}/{user} in", service, user, restore)

    def purge(self, service: str, user: str, *, force: bool = False) -> None:
        """Delete the secret of service/user for good, every version, at once: only a deleted
        one, unless force."""
        service, user = check_row(service, user)
        self._writing(
            f"cannot purge {service}/{user} from",
            service,
            user,
            lambda: self._writer.purge(service, user, force),
        )

    def set_tags(
        self,
        service: str,
        user: str,
        tags: Mapping[str, str] | None = None,
        untag: Collection[str] = (),
    ) -> dict[str, str]:
        """Set tags on, and remove untag from, service/user without a new version; return
        its tags."""
        service, user = check_row(service, user)
        tags, untag = check_tags(tags), [check_tag_key(k) for k in untag]
        return self._writing(
            f"cannot tag {service}/{user} in",
            service,
            user,
            lambda: self._writer.set_tags(service, user, tags, untag),
        )

    def set_schedule(
        self,
        service: str,
        user: str,
        *,
        rotate_every: float | Keep | None = KEEP,
        not_after: str | datetime | Keep | None = KEEP,
    ) -> tuple[int | None, str | None]:
        """Change the rotation period (seconds; None clears it) of service/user, and the hard
        expiry of its current value (None clears it), without a new version; return both as
        they now are. What is not given is kept."""
        service, user = check_row(service, user)
        period = (
            rotate_every if isinstance(rotate_every, Keep) else check_rotate_every(rotate_every)
        )
        expiry = not_after if isinstance(not_after, Keep) else check_not_after(not_after)
        return self._writing(
            f"cannot change the schedule of {service}/{user} in",
            service,
            user,
            lambda: self._writer.set_schedule(service, user, period, expiry),
        )
