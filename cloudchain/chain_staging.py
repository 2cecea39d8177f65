"""CloudChain's staged writes of one secret: promote and abort a pending version (the pending
version itself is written by save(..., stage="pending")), and the rotation lease that
rotation.py takes around its four steps."""

from __future__ import annotations

import time

from .chain_writes import SecretWrites, _why
from .layout import ABORT
from .validation import check_row, check_version


class StagedWrites(SecretWrites):
    """Promote, abort, and a rotation's lease."""

    def promote(
        self,
        service: str,
        user: str,
        *,
        expect_version: int | None = None,
        comment: str | None = None,
        _lease: str | None = None,
        _pending: int | None = None,
    ) -> int:
        """Make the pending version of service/user current in one conditional write and
        return its number; the old current one goes into history (and becomes "previous").

        With expect_version, only if the current version is that number; otherwise raise
        VersionConflictError and write nothing. SecretNotFoundError when none is pending.
        """
        service, user = check_row(service, user)
        if expect_version is not None:
            check_version(expect_version)
        why = _why("promote", comment)
        return self._writing(
            f"cannot promote the pending version of {service}/{user} in",
            service,
            user,
            lambda: self._writer.promote(
                service,
                user,
                expect_version=expect_version,
                why=why,
                holder=_lease,
                pending_version=_pending,
            ),
        )

    def abort(self, service: str, user: str, *, comment: str | None = None) -> int:
        """Discard the pending version of service/user, recording the abort in its history;
        return the discarded version's number."""
        service, user = check_row(service, user)
        why = _why(ABORT, comment)
        return self._writing(
            f"cannot abort the pending version of {service}/{user} in",
            service,
            user,
            lambda: self._writer.abort(service, user, why),
        )

    def _claim_rotation(
        self, service: str, user: str, holder: str, seconds: float
    ) -> tuple[int, int | None]:
        """Take the rotation lease for seconds; return the current version and the pending
        one (None: none). RotationBusyError when another run holds it."""
        now = time.time()
        row = self._writing(
            f"cannot start rotating {service}/{user} in",
            service,
            user,
            lambda: self._writer.claim(service, user, holder, int(now + seconds) + 1, now),
        )
        pending = row.pending.version if row.pending is not None else None
        return row.current.version, pending

    def _release_rotation(self, service: str, user: str, holder: str) -> None:
        """Give the rotation lease back, if it is still holder's."""
        self._writing(
            f"cannot end the rotation of {service}/{user} in",
            service,
            user,
            lambda: self._writer.release(service, user, holder),
        )
