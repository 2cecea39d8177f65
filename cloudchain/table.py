"""Everything DynamoDB: conditional writes, reads and queries of the items layout.py lays out,
and the table itself. No KMS here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .errors import CloudChainConfigError
from .layout import (
    EXPIRES_AT,
    REVISION,
    SECRET,
    SERVICE,
    TAGS,
    USERNAME,
    VERSION,
    StoredItem,
    decode,
    key_of,
)
from .summary import SUMMARY_ATTRIBUTES, RowSummary, summary_of


class ConditionFailed(Exception):
    """The item changed since it was read; the conditional write did nothing.

    current is the item as it was when the condition failed (None: there was none), as
    DynamoDB returns it, so the writer need not read it again.
    """

    def __init__(self, current: StoredItem | None) -> None:
        super().__init__("the item changed since it was read")
        self.current = current


def get_item(client: Any, table: str, service: str, user: str) -> StoredItem | None:
    """Return the row for service/user, read consistently, or None."""
    response = client.get_item(TableName=table, Key=key_of(service, user), ConsistentRead=True)
    item = response.get("Item")
    return None if item is None else decode(item, table)


def _condition(expected: StoredItem | None) -> dict[str, Any]:
    """Return the condition that the row is still exactly as it was read."""
    if expected is None:
        return {
            "ConditionExpression": "attribute_not_exists(#s)",
            "ExpressionAttributeNames": {"#s": SERVICE},
        }
    if expected.revision is not None:
        return {
            "ConditionExpression": "#rev = :rev",
            "ExpressionAttributeNames": {"#rev": REVISION},
            "ExpressionAttributeValues": {":rev": {"N": str(expected.revision)}},
        }
    # Written before revisions: the same version and the same ciphertext, and still no revision.
    names = {"#rev": REVISION, "#v": VERSION, "#secret": SECRET}
    values: dict[str, Any] = {":secret": expected.raw_secret}
    condition = "attribute_not_exists(#rev) AND #secret = :secret AND "
    if expected.has_version:
        condition += "#v = :v"
        values[":v"] = {"N": str(expected.current.version)}
    else:
        condition += "attribute_not_exists(#v)"
    return {
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def _failed(err: Any, table: str) -> ConditionFailed:
    item = err.response.get("Item")
    return ConditionFailed(None if not item else decode(item, table))


def put_item(client: Any, table: str, item: dict[str, Any], expected: StoredItem | None) -> None:
    """Write item only if the row is still as expected (None: absent); else ConditionFailed."""
    try:
        client.put_item(
            TableName=table,
            Item=item,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            **_condition(expected),
        )
    except client.exceptions.ConditionalCheckFailedException as err:
        raise _failed(err, table) from None


def delete_item(client: Any, table: str, expected: StoredItem) -> None:
    """Delete the row, every version, only if it is still as expected; else ConditionFailed."""
    try:
        client.delete_item(
            TableName=table,
            Key=key_of(expected.service, expected.user),
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            **_condition(expected),
        )
    except client.exceptions.ConditionalCheckFailedException as err:
        raise _failed(err, table) from None


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
            yield decode(item, table)


def iter_summaries(client: Any, table: str, service: str | None = None) -> Iterator[RowSummary]:
    """Yield a summary of every row, or of one service's, without reading any ciphertext."""
    names = {f"#a{n}": name for n, name in enumerate((*SUMMARY_ATTRIBUTES, TAGS))}
    projection = {
        "ProjectionExpression": ", ".join(names),
        "ExpressionAttributeNames": names,
    }
    if service is None:
        pages = client.get_paginator("scan").paginate(TableName=table, **projection)
    else:
        pages = client.get_paginator("query").paginate(
            TableName=table,
            KeyConditionExpression="#a0 = :s",
            ExpressionAttributeValues={":s": {"S": service}},
            **projection,
        )
    for page in pages:
        for item in page.get("Items", []):
            yield summary_of(item)


def enable_ttl(client: Any, table: str) -> bool:
    """Turn on DynamoDB's TTL on ExpiresAt unless it is on; return whether it was turned on."""
    described = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    status, attribute = described.get("TimeToLiveStatus"), described.get("AttributeName")
    if status in ("ENABLED", "ENABLING"):
        if attribute != EXPIRES_AT:
            raise CloudChainConfigError(
                f"table '{table}' has TTL on the attribute {attribute}; cloudchain's recovery "
                f"window needs it on {EXPIRES_AT}"
            )
        return False
    client.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": EXPIRES_AT}
    )
    return True


# What global tables need on the home table.
STREAMS = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


def create_table(client: Any, table: str, *, streams: bool = False) -> bool:
    """Create the table (on-demand, the reference key schema, streams if asked) unless it
    exists; wait for ACTIVE. It looks first, so an existing table sees no CreateTable."""
    try:
        client.describe_table(TableName=table)
        created = False
    except client.exceptions.ResourceNotFoundException:
        created = _create(client, table, streams)
    client.get_waiter("table_exists").wait(
        TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    return created


def _create(client: Any, table: str, streams: bool) -> bool:
    extra = {"StreamSpecification": STREAMS} if streams else {}
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
            **extra,
        )
    except client.exceptions.ResourceInUseException:
        return False  # created by someone else since we looked
    return True
