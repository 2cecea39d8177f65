"""Everything DynamoDB: the item layout, versioned conditional writes, queries. No KMS here.

One item per (Service, Username). The current version sits in the reference attributes, so the
AWS CLI recovery recipe keeps working; older retained versions sit in a History list:

    Service   S   hash key
    Username  S   range key
    Secret    S   base64 CiphertextBlob of the current version
    Version   N   current version (absent on items written before versions: read as 1)
    SavedAt   S   ISO 8601 UTC time of the current save
    Context   S   comma-separated encryption-context keys of Secret (absent: not recorded,
                  a legacy row: the reference context, 0.x's {"string": "string"}, or none)
    Scheme    S   "direct" or "envelope-v1" (absent: direct); an envelope Secret is type B
    Binary    BOOL  true when the secret was saved as bytes (absent: text)
    KeyId     S   ARN of the KMS key that encrypted Secret (absent: not recorded)
    Digest    S   SHA-256 of the Secret bytes, hex (absent: not recorded)
    History   L   older versions, newest first: maps of the per-version attributes above
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import IntegrityError

SERVICE = "Service"
USERNAME = "Username"
SECRET = "Secret"
VERSION = "Version"
SAVED_AT = "SavedAt"
CONTEXT = "Context"
SCHEME = "Scheme"
BINARY = "Binary"
KEY_ID = "KeyId"
DIGEST = "Digest"
HISTORY = "History"
# DynamoDB's item limit is 400 KB; counted conservatively (below also moto's 405,000), so an
# item that passes item_size() is accepted everywhere.
ITEM_SIZE_LIMIT = 400_000


class ConditionFailed(Exception):
    """The item changed since it was read; the conditional write did nothing."""


@dataclass(frozen=True)
class StoredVersion:
    """One version as stored: the ciphertext is still encrypted."""

    version: int
    ciphertext: bytes
    saved_at: str | None
    context_keys: tuple[str, ...] | None  # None: not recorded (a legacy row)
    scheme: str = "direct"
    binary: bool = False
    key_arn: str | None = None
    digest: str | None = None


@dataclass(frozen=True)
class StoredItem:
    """One row: its current version and the older versions it retains, newest first."""

    service: str
    user: str
    current: StoredVersion
    history: tuple[StoredVersion, ...]
    # How the current state is recognised in a conditional write: its Version, or for an item
    # written before versions, its Secret.
    has_version: bool
    secret_attribute: str

    @property
    def versions(self) -> tuple[StoredVersion, ...]:
        """Every retained version, newest first."""
        return (self.current, *self.history)

    def find(self, version: int) -> StoredVersion | None:
        """Return the retained version numbered version, or None."""
        return next((v for v in self.versions if v.version == version), None)


def _key(service: str, user: str) -> dict[str, Any]:
    return {SERVICE: {"S": service}, USERNAME: {"S": user}}


def _decode_version(attrs: dict[str, Any], default_version: int, where: str) -> StoredVersion:
    secret = attrs.get(SECRET, {})
    try:
        if "B" in secret:
            ciphertext = bytes(secret["B"])
        else:
            ciphertext = base64.b64decode(secret["S"], validate=True)
        version = int(attrs[VERSION]["N"]) if VERSION in attrs else default_version
    except (KeyError, ValueError, binascii.Error):
        raise IntegrityError(f"{where}: the Secret or Version attribute is malformed") from None
    context = attrs.get(CONTEXT, {}).get("S")
    return StoredVersion(
        version=version,
        ciphertext=ciphertext,
        saved_at=attrs.get(SAVED_AT, {}).get("S"),
        context_keys=tuple(context.split(",")) if context else None,
        scheme=attrs.get(SCHEME, {}).get("S", "direct"),
        binary=bool(attrs.get(BINARY, {}).get("BOOL", False)),
        key_arn=attrs.get(KEY_ID, {}).get("S"),
        digest=attrs.get(DIGEST, {}).get("S"),
    )


def _decode(item: dict[str, Any], table: str) -> StoredItem:
    service, user = item[SERVICE]["S"], item[USERNAME]["S"]
    where = f"{service}/{user} in table '{table}'"
    history = tuple(
        _decode_version(entry.get("M", {}), 0, f"{where}, history entry {n}")
        for n, entry in enumerate(item.get(HISTORY, {}).get("L", []))
    )
    return StoredItem(
        service=service,
        user=user,
        current=_decode_version(item, 1, where),
        history=history,
        has_version=VERSION in item,
        secret_attribute=item.get(SECRET, {}).get("S", ""),
    )


def _encode_version(version: StoredVersion) -> dict[str, Any]:
    # Direct ciphertexts keep the reference format (base64 in an S attribute); envelope blobs
    # are stored raw (B) so that base64 does not cost a third of the 400 KB item.
    secret: dict[str, Any]
    if version.scheme == "direct":
        secret = {"S": base64.b64encode(version.ciphertext).decode("ascii")}
    else:
        secret = {"B": version.ciphertext}
    attrs: dict[str, Any] = {SECRET: secret, VERSION: {"N": str(version.version)}}
    optional = {
        CONTEXT: {"S": ",".join(version.context_keys)} if version.context_keys else None,
        SAVED_AT: {"S": version.saved_at} if version.saved_at else None,
        SCHEME: {"S": version.scheme} if version.scheme != "direct" else None,
        BINARY: {"BOOL": True} if version.binary else None,
        KEY_ID: {"S": version.key_arn} if version.key_arn else None,
        DIGEST: {"S": version.digest} if version.digest else None,
    }
    attrs.update({name: value for name, value in optional.items() if value is not None})
    return attrs


def item_size(value: Any) -> int:
    """Estimate, from above, DynamoDB's size of an item or attribute value in wire format."""
    if (
        isinstance(value, dict)
        and len(value) == 1
        and next(iter(value)) in ("S", "N", "B", "BOOL", "L", "M")
    ):
        kind, inner = next(iter(value.items()))
        if kind == "S":
            return len(inner.encode("utf-8"))
        if kind == "B":
            return len(inner)
        if kind in ("N", "BOOL"):
            return 21
        if kind == "L":
            return 3 + sum(1 + item_size(element) for element in inner)
        return 3 + sum(1 + len(k.encode()) + item_size(v) for k, v in inner.items())
    return sum(len(k.encode()) + item_size(v) for k, v in value.items())


def build_item(
    service: str, user: str, current: StoredVersion, history: list[StoredVersion]
) -> dict[str, Any]:
    """Return the item for current plus history, dropping the oldest history until it fits."""
    history = list(history)
    while True:
        item = {**_key(service, user), **_encode_version(current)}
        if history:
            item[HISTORY] = {"L": [{"M": _encode_version(v)} for v in history]}
        if item_size(item) <= ITEM_SIZE_LIMIT or not history:
            return item
        history.pop()


def get_item(client: Any, table: str, service: str, user: str) -> StoredItem | None:
    """Return the row for service/user, read consistently, or None."""
    response = client.get_item(TableName=table, Key=_key(service, user), ConsistentRead=True)
    item = response.get("Item")
    return None if item is None else _decode(item, table)


def put_item(client: Any, table: str, item: dict[str, Any], expected: StoredItem | None) -> None:
    """Write item only if the row is still as expected (None: absent); else ConditionFailed."""
    names = {"#s": SERVICE}
    values: dict[str, Any] = {}
    if expected is None:
        condition = "attribute_not_exists(#s)"
    elif expected.has_version:
        condition = "#v = :v"
        names = {"#v": VERSION}
        values = {":v": {"N": str(expected.current.version)}}
    else:
        condition = "attribute_not_exists(#v) AND #secret = :secret"
        names = {"#v": VERSION, "#secret": SECRET}
        values = {":secret": {"S": expected.secret_attribute}}
    extra = {"ExpressionAttributeValues": values} if values else {}
    try:
        client.put_item(
            TableName=table,
            Item=item,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            **extra,
        )
    except client.exceptions.ConditionalCheckFailedException:
        raise ConditionFailed from None


def delete_item(client: Any, table: str, service: str, user: str) -> bool:
    """Delete the row for service/user, every version, and return whether it existed."""
    response = client.delete_item(TableName=table, Key=_key(service, user), ReturnValues="ALL_OLD")
    # Real DynamoDB omits Attributes when nothing was deleted; some moto versions send {}.
    return bool(response.get("Attributes"))


def query_items(client: Any, table: str, service: str) -> Iterator[StoredItem]:
    """Yield every row of one service, read consistently: one paginated Query, never a Scan."""
    pages = client.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="#s = :s",
        ExpressionAttributeNames={"#s": SERVICE},
        ExpressionAttributeValues={":s": {"S": service}},
        ConsistentRead=True,
    )
    for page in pages:
        for item in page.get("Items", []):
            yield _decode(item, table)


def iter_keys(
    client: Any, table: str, service: str | None = None
) -> Iterator[tuple[str, str, bool]]:
    """Yield (service, user, legacy) for every row, or one service's, without reading secrets.

    legacy: the current version records no encryption context (written before cloudchain
    recorded one); `cchain --reencrypt` upgrades such rows.
    """
    projection = {
        "ProjectionExpression": "#s, #u, #c",
        "ExpressionAttributeNames": {"#s": SERVICE, "#u": USERNAME, "#c": CONTEXT},
    }
    if service is None:
        pages = client.get_paginator("scan").paginate(TableName=table, **projection)
    else:
        pages = client.get_paginator("query").paginate(
            TableName=table,
            KeyConditionExpression="#s = :s",
            ExpressionAttributeValues={":s": {"S": service}},
            **projection,
        )
    for page in pages:
        for item in page.get("Items", []):
            yield item[SERVICE]["S"], item[USERNAME]["S"], CONTEXT not in item


def create_table(client: Any, table: str) -> bool:
    """Create the table (on-demand, the reference key schema) unless it exists; wait for ACTIVE."""
    created = True
    try:
        client.create_table(
            TableName=table,
            AttributeDefinitions=[
                {"AttributeName": SERVICE, "AttributeType": "S"},
                {"AttributeName": USERNAME, "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": SERVICE, "KeyType": "HASH"},
                {"AttributeName": USERNAME, "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    except client.exceptions.ResourceInUseException:
        created = False
    client.get_waiter("table_exists").wait(
        TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    return created
