"""Rotating a secret in Secrets Manager's four steps, over cloudchain's staged versions:

1. create: a pending version (or the one an interrupted rotation left, so a rerun resumes);
2. set:    `HOOK... set` with the pending value on stdin puts it where it is used;
3. test:   `HOOK... test` the same way checks that it works;
4. finish: the pending version is promoted, conditional on the current version the rotation
           started from.

A rotation holds a short lease on the row (layout.ROTATING) from before create until finish,
so two rotations of one secret cannot both run their hooks; a crashed one's lease expires.
The hook sees the value on its stdin only: never on argv, never in its environment.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import CloudChainError, ValidationError, VersionConflictError
from .process import Finished, run_bounded
from .results import Secret

if TYPE_CHECKING:
    from .chain import CloudChain

STEPS = ("set", "test")
# How long a lease outlives the hooks' own deadlines: the create and finish writes.
LEASE_MARGIN = 120.0
MAX_HOOK_TIMEOUT = 86_400.0  # a day


class HookFailedError(CloudChainError):
    """A rotation hook failed at one step; nothing was promoted and the pending version is
    kept for a rerun."""

    def __init__(self, message: str, *, step: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.step = step


@dataclass(frozen=True)
class Hook:
    """The hook command (argv, no shell) and how long each step may take."""

    argv: tuple[str, ...]
    timeout: float = 60.0

    def __post_init__(self) -> None:
        # The lease outlasts two steps: a longer timeout would have a crashed rotation block
        # the next for days (and past ~24 days the wait itself overflows).
        if not 0 < self.timeout <= MAX_HOOK_TIMEOUT:
            raise ValidationError(
                f"a hook timeout is more than zero and at most 1 day, not {self.timeout:g} s"
            )


@dataclass(frozen=True)
class Rotated:
    """What a rotation did: the version now current, the one it replaced, and whether it
    resumed a pending version an earlier run left."""

    version: int
    previous_version: int
    resumed: bool


def hook_environment(service: str, user: str, version: int, current: int) -> dict[str, str]:
    """The hook's environment: ours, plus which secret and versions it works on."""
    env = dict(os.environ)
    env.update(
        CLOUDCHAIN_SERVICE=service,
        CLOUDCHAIN_USER=user,
        CLOUDCHAIN_VERSION=str(version),
        CLOUDCHAIN_CURRENT_VERSION=str(current),
    )
    return env


def run_step(hook: Hook, step: str, value: bytes, env: dict[str, str]) -> Finished:
    """Run `HOOK... step` with value on its stdin; OSError when it cannot be started."""
    return run_bounded([*hook.argv, step], timeout=hook.timeout, env=env, stdin=value)


def rotate(
    chain: CloudChain,
    service: str,
    user: str,
    value: Secret | Callable[[], Secret],
    hook: Hook | None = None,
    *,
    comment: str | None = None,
    on_step: Callable[[str, int], None] | None = None,
) -> Rotated:
    """Rotate service/user to value (or value(), made only if no pending version is left to
    resume) through the four steps; raise HookFailedError when set or test fails,
    RotationBusyError (a VersionConflictError) when another rotation holds the secret.
    on_step(step, version) is told as each step starts."""
    holder = secrets.token_hex(16)
    lease = LEASE_MARGIN + (len(STEPS) * hook.timeout if hook is not None else 0.0)
    current, pending = chain._claim_rotation(service, user, holder, lease)
    promoted = False
    try:
        resumed = pending is not None
        if pending is not None and pending < current:
            # Saved since it was staged, it can never be promoted: no hook may set it.
            raise VersionConflictError(
                f"{service}/{user}: pending version {pending} is older than the current "
                f"version {current}, saved since; nothing was done",
                current_version=current,
                hint="--abort it, then --rotate again",
            )
        if pending is None:
            new = value() if callable(value) else value
            pending = chain.save(service, user, new, stage="pending", comment=comment)
        if on_step is not None:
            on_step("create", pending)
        if hook is not None:
            _run_hook(chain, service, user, hook, pending, current, on_step)
        if on_step is not None:
            on_step("finish", pending)
        version = chain.promote(
            service, user, expect_version=current, comment=comment, _lease=holder, _pending=pending
        )
        promoted = True
        return Rotated(version, current, resumed)
    finally:
        if not promoted:
            # A failure to give the lease back is not the rotation's: it expires anyway.
            with contextlib.suppress(CloudChainError):
                chain._release_rotation(service, user, holder)


def _run_hook(
    chain: CloudChain,
    service: str,
    user: str,
    hook: Hook,
    pending: int,
    current: int,
    on_step: Callable[[str, int], None] | None,
) -> None:
    secret = chain.read(service, user, pending)  # this very version: promote checks it is
    value = secret if isinstance(secret, bytes) else secret.encode("utf-8")
    env = hook_environment(service, user, pending, current)
    shown = hook.argv[0]
    kept = (
        f"nothing was promoted; {service}/{user} stays at version {current} and pending "
        f"version {pending} is kept"
    )
    hint = "run --rotate again to resume, or --abort to give up"
    for step in STEPS:
        if on_step is not None:
            on_step(step, pending)
        try:
            finished = run_step(hook, step, value, env)
        except OSError as err:
            raise HookFailedError(
                f"rotation step {step}: the hook {shown} cannot be run ({err.strerror or err}); "
                + kept,
                step=step,
                hint=hint,
            ) from None
        if not finished.ok:
            raise HookFailedError(
                f"rotation step {step}: the hook {shown} {finished.describe()}; {kept}",
                step=step,
                hint=hint,
            )


def check_hook(argv: Sequence[str]) -> str | None:
    """Why the hook cannot be run (missing, not executable), or None; checked before any
    AWS call so a typo costs nothing."""
    import shutil

    program = argv[0] if argv else ""
    if not program:
        return "the hook command is empty"
    if os.sep in program:
        if not os.path.exists(program):
            return f"the hook {program} does not exist"
        if not os.path.isfile(program):
            return f"the hook {program} is not a file"
        if not os.access(program, os.X_OK):
            return f"the hook {program} is not executable"
        return None
    if shutil.which(program) is None:
        return f"the hook {program} is not found on PATH"
    return None
