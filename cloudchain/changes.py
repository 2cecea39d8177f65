"""The change check: what a service's rows are now, read without a secret, so a caller learns
whether anything changed with one paginated Query and no KMS call.

The Query projects only the names, Version, Revision and Tags of each row, never Secret or
History. Every write cloudchain makes (save, delete, undelete, rollback, promote, tag edit,
re-encryption) raises a row's Revision, and a purge removes the row, so comparing two checks
tells which users changed: those to decrypt again, and those to forget. A row written before
revisions has none; its Version (or nothing at all, for a reference row) stands in, and any
write of ours adds one.

The agent's refresh-ahead, its templates, /v1/watch and `cchain --exec --watch` all use this
one check. No AWS error is translated here: CloudChain.change_check runs it through the
regions, like any read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .layout import REVISION, SERVICE, TAGS, USERNAME, VERSION

# What the check reads of a row: never Secret, History or anything else.
CHECKED_ATTRIBUTES = (SERVICE, USERNAME, VERSION, REVISION, TAGS)


@dataclass(frozen=True)
class Mark:
    """What the check saw of one row: enough to tell that it changed, nothing of its value."""

    version: int | None
    revision: int | None
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Changed:
    """Users whose rows changed (new ones included) and users whose rows are gone."""

    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)

    def __len__(self) -> int:
        return len(self.changed) + len(self.removed)


@dataclass(frozen=True)
class ServiceMarks:
    """One change check of a service: a Mark per row (deleted rows included: a delete is a
    write like any other, and the reader of the value learns it is gone)."""

    service: str
    rows: Mapping[str, Mark] = field(default_factory=dict)

    @property
    def token(self) -> str:
        """An opaque token for this state: equal states give equal tokens, in any process.
        A digest of names and numbers, so it carries no secret."""
        digest = hashlib.sha256(self.service.encode("utf-8", "surrogatepass"))
        for user in sorted(self.rows):
            mark = self.rows[user]
            digest.update(f"\0{len(user)}:".encode())
            digest.update(user.encode("utf-8", "surrogatepass"))
            digest.update(f"\0{mark.version}\0{mark.revision}\0{mark.tags!r}".encode())
        return digest.hexdigest()[:32]

    def since(self, before: ServiceMarks | None) -> Changed:
        """What changed from before to this check (everything, when there was no before)."""
        old = before.rows if before is not None else {}
        changed = tuple(sorted(u for u, mark in self.rows.items() if old.get(u) != mark))
        removed = tuple(sorted(u for u in old if u not in self.rows))
        return Changed(changed, removed)


def _number(item: Mapping[str, Any], name: str) -> int | None:
    text = item.get(name, {}).get("N")
    return int(text) if isinstance(text, str) and text.isdigit() else None


def _mark(item: Mapping[str, Any]) -> Mark:
    tags = item.get(TAGS, {}).get("M", {})
    return Mark(
        version=_number(item, VERSION),
        revision=_number(item, REVISION),
        tags=tuple(sorted((k, v.get("S", "")) for k, v in tags.items())),
    )


def _items(client: Any, table: str, service: str) -> Iterator[Mapping[str, Any]]:
    names = {f"#a{n}": name for n, name in enumerate(CHECKED_ATTRIBUTES)}
    pages = client.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="#a0 = :s",
        ExpressionAttributeValues={":s": {"S": service}},
        ProjectionExpression=", ".join(names),
        ExpressionAttributeNames=names,
        ConsistentRead=True,  # a check made right after a write sees it
    )
    for page in pages:
        yield from page.get("Items", [])


def check(client: Any, table: str, service: str) -> ServiceMarks:
    """One change check of service: a paginated, projected Query; no KMS call."""
    rows = {item[USERNAME]["S"]: _mark(item) for item in _items(client, table, service)}
    return ServiceMarks(service, rows)
