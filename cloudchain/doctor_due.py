"""`cchain --doctor -e SERVICE`: how many of the service's secrets are due for rotation. A
listing read (one projection Query, no KMS), reported, never a failure: rotating is the
operator's call, and `cchain --due` is the alert."""

from __future__ import annotations

from .doctor_state import Doctor


def check_due(doctor: Doctor) -> str:
    """Count the service's secrets due for rotation now, and soon (within 7 days)."""
    from .chain import CloudChain

    assert doctor.config is not None and doctor.service is not None
    chain = CloudChain.from_settings(doctor.config)
    service = doctor.service
    found = doctor.aws(
        f"cannot read the rotation schedules of {service}", lambda: chain.due(service)
    )
    due = sum(1 for d in found if d.due)
    return (
        f"{due} secret{'s' if due != 1 else ''} of {service} due for rotation now, "
        f"{len(found) - due} more within 7 days (`cchain --due -e {service}` lists them)"
    )
