"""Source names -> (service, user): each checked by cloudchain's own rules, and two names that
land on one row refused, before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ValidationError
from ..validation import check_new_row
from .model import SourceSecret
from .sources import NameRule


@dataclass(frozen=True)
class Planned:
    """A source secret and the row it goes to."""

    secret: SourceSecret
    service: str
    user: str


@dataclass(frozen=True)
class Refused:
    """A source name that cannot be imported as it is, and why."""

    name: str
    reason: str


def target_of(rule: NameRule, name: str) -> tuple[str, str]:
    """Return (service, user) for a source name, or raise ValidationError saying why not."""
    if rule.kind == "service":
        service, user = rule.value, name
    elif rule.kind == "split":
        service, sep, user = name.partition(rule.value)
        if not sep:
            raise ValidationError(f"it has no {rule.value!r} to split a service from a user at")
    else:  # "split-last", "path": the last segment is the user
        service, sep, user = name.rpartition(rule.value)
        if rule.kind == "path":
            service = service.lstrip("/")
        if not sep:
            raise ValidationError(f"it has no {rule.value!r} to split a service from a user at")
    if not service or not user:
        raise ValidationError("its service or user part is empty")
    try:
        return check_new_row(service, user)
    except ValidationError as err:
        raise ValidationError(str(err)) from None


def plan(secrets: list[SourceSecret], rule: NameRule) -> tuple[list[Planned], list[Refused]]:
    """Map every source secret to its row; return the rows and the names refused."""
    planned: list[Planned] = []
    refused: list[Refused] = []
    by_row: dict[tuple[str, str], list[SourceSecret]] = {}
    for secret in secrets:
        try:
            row = target_of(rule, secret.mapped_name)
        except ValidationError as err:
            refused.append(Refused(secret.mapped_name, str(err)))
            continue
        by_row.setdefault(row, []).append(secret)
    for (service, user), group in by_row.items():
        if len(group) > 1:
            names = ", ".join(s.mapped_name for s in group)
            refused.extend(
                Refused(s.mapped_name, f"{names} all map to {service}/{user}") for s in group
            )
        else:
            planned.append(Planned(group[0], service, user))
    planned.sort(key=lambda p: (p.service, p.user))
    refused.sort(key=lambda r: r.name)
    return planned, refused
