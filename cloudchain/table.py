"""Everything DynamoDB: the item layout, reads, writes, queries and table creation. No KMS here.

Item layout (reference format): Service (S, hash key), Username (S, range key) and Secret (S),
the standard base64 of the KMS CiphertextBlob.
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


@dataclass(frozen=True)
class StoredItem:
    """One row as stored: the ciphertext is still encrypted."""

    service: str
    user: str
    ciphertext: bytes


def _key(service: str, user: str) -> dict[str, Any]:
    return {SERVICE: {"S": service}, USERNAME: {"S": user}}


def _decode(item: dict[str, Any], table: str) -> StoredItem:
    service, user = item[SERVICE]["S"], item[USERNAME]["S"]
    try:
        ciphertext = base64.b64decode(item[SECRET]["S"], validate=True)
    except (KeyError, binascii.Error):
        raise IntegrityError(
            f"the Secret attribute of {service}/{user} in table '{table}' is missing or not base64"
        ) from None
    return StoredItem(service=service, user=user, ciphertext=ciphertext)


def get_item(client: Any, table: str, service: str, user: str) -> StoredItem | None:
    """Return the row for service/user, read consistently, or None."""
    response = client.get_item(TableName=table, Key=_key(service, user), ConsistentRead=True)
    item = response.get("Item")
    return None if item is None else _decode(item, table)


def put_item(client: Any, table: str, service: str, user: str, ciphertext: bytes) -> None:
    """Write the row for service/user, replacing any earlier one."""
    item = _key(service, user)
    item[SECRET] = {"S": base64.b64encode(ciphertext).decode("ascii")}
    client.put_item(TableName=table, Item=item)


def delete_item(client: Any, table: str, service: str, user: str) -> bool:
    """Delete the row for service/user and return whether it existed."""
    response = client.delete_item(TableName=table, Key=_key(service, user), ReturnValues="ALL_OLD")
    return "Attributes" in response


def iter_keys(client: Any, table: str, service: str | None = None) -> Iterator[tuple[str, str]]:
    """Yield (service, user) for every row, or for one service's rows, without reading secrets."""
    projection = {
        "ProjectionExpression": "#s, #u",
        "ExpressionAttributeNames": {"#s": SERVICE, "#u": USERNAME},
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
            yield item[SERVICE]["S"], item[USERNAME]["S"]


def create_table(client: Any, table: str) -> bool:
    """Create the table (on-demand, the reference key schema) unless it exists; wait until ACTIVE."""
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
