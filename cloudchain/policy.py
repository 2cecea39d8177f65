"""Least-privilege IAM policies that let a role read, or read and write, one service's secrets."""

from __future__ import annotations

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


def build_policy(
    service: str, access: str, *, region: str, account: str, table: str, key_arn: str
) -> dict[str, Any]:
    """Return an IAM policy document for access ("read" or "write") to one service's secrets.

    DynamoDB access is limited to items whose partition key is the service
    (dynamodb:LeadingKeys); KMS use is limited to ciphertexts whose encryption context names
    the service (kms:EncryptionContext:Service).
    """
    table_arn = f"arn:{partition_of(key_arn)}:dynamodb:{region}:{account}:table/{table}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CloudChainItemsOfService",
                "Effect": "Allow",
                "Action": DYNAMODB_ACTIONS[access],
                "Resource": table_arn,
                "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [service]}},
            },
            {
                "Sid": "CloudChainKeyForService",
                "Effect": "Allow",
                "Action": KMS_ACTIONS[access],
                "Resource": key_arn,
                "Condition": {"StringEquals": {"kms:EncryptionContext:Service": service}},
            },
        ],
    }
