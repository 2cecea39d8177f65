"""Least-privilege IAM policies that let a role read, or read and write, one service's secrets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ACCESS = ("read", "write")
DYNAMODB_ACTIONS = {
    "read": ["dynamodb:GetItem", "dynamodb:Query"],
    "write": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem"],
}
KMS_ACTIONS = {
    "read": ["kms:Decrypt"],
    "write": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
}


def partition_of(arn: str) -> str:
    """Return the partition of an ARN (aws, aws-cn, aws-us-gov)."""
    parts = arn.split(":")
    return parts[1] if len(parts) > 5 and parts[0] == "arn" else "aws"


def in_region(arn: str, region: str) -> str:
    """The same ARN in another region: a multi-Region key's replica keeps its key id."""
    parts = arn.split(":")
    return ":".join([*parts[:3], region, *parts[4:]])


def build_policy(
    service: str,
    access: str,
    *,
    region: str,
    account: str,
    table: str,
    key_arn: str,
    replica_regions: Sequence[str] = (),
) -> dict[str, Any]:
    """Return an IAM policy document for access ("read" or "write") to one service's secrets.

    DynamoDB access is limited to items whose partition key is the service
    (dynamodb:LeadingKeys); KMS use is limited to ciphertexts whose encryption context names
    the service (kms:EncryptionContext:Service). With replica regions, reads fail over there,
    so the replica tables and keys get the read actions; writes stay home.
    """
    table_arn = f"arn:{partition_of(key_arn)}:dynamodb:{region}:{account}:table/{table}"
    items = {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [service]}}
    context = {"StringEquals": {"kms:EncryptionContext:Service": service}}
    statements: list[dict[str, Any]] = [
        {
            "Sid": "CloudChainItemsOfService",
            "Effect": "Allow",
            "Action": DYNAMODB_ACTIONS[access],
            "Resource": table_arn,
            "Condition": items,
        },
        {
            "Sid": "CloudChainKeyForService",
            "Effect": "Allow",
            "Action": KMS_ACTIONS[access],
            "Resource": key_arn,
            "Condition": context,
        },
    ]
    if replica_regions:
        statements += [
            {
                "Sid": "CloudChainReplicaItemsOfService",
                "Effect": "Allow",
                "Action": DYNAMODB_ACTIONS["read"],
                "Resource": [in_region(table_arn, r) for r in replica_regions],
                "Condition": items,
            },
            {
                "Sid": "CloudChainReplicaKeysForService",
                "Effect": "Allow",
                "Action": KMS_ACTIONS["read"],
                "Resource": [in_region(key_arn, r) for r in replica_regions],
                "Condition": context,
            },
        ]
    return {"Version": "2012-10-17", "Statement": statements}
