"""Everything KMS: the encryption context that binds a ciphertext to its row, encrypt and decrypt.

No DynamoDB here. Callers wrap these in errors.aws_errors so KMS failures are translated once.
"""

from __future__ import annotations

from typing import Any

from .errors import IntegrityError

# The encryption-context keys every new ciphertext is bound with: its row and its version, so a
# ciphertext can be neither moved to another row nor replayed as another version of its own.
VERSIONED_CONTEXT = ("Service", "Username", "Version")


def context_for(keys: tuple[str, ...], service: str, user: str, version: int) -> dict[str, str]:
    """Return the encryption context with the given keys for one version of a row."""
    values = {"Service": service, "Username": user, "Version": str(version)}
    unknown = [key for key in keys if key not in values]
    if unknown:
        raise IntegrityError(
            f"{service}/{user} version {version} records unknown context keys {unknown}"
        )
    return {key: values[key] for key in keys}


def encrypt(kms: Any, key_id: str, plaintext: bytes, context: dict[str, str]) -> bytes:
    """Encrypt plaintext under key_id, bound to context, and return the CiphertextBlob."""
    response = kms.encrypt(KeyId=key_id, Plaintext=plaintext, EncryptionContext=context)
    return bytes(response["CiphertextBlob"])


def decrypt(kms: Any, ciphertext: bytes, context: dict[str, str]) -> bytes:
    """Decrypt a CiphertextBlob that must have been bound to context."""
    # No KeyId: the blob names its key, so reads keep working after the alias moves to a new key.
    response = kms.decrypt(CiphertextBlob=ciphertext, EncryptionContext=context)
    return bytes(response["Plaintext"])


def key_exists(kms: Any, key_id: str) -> bool:
    """Return True when the key or alias resolves in KMS."""
    try:
        kms.describe_key(KeyId=key_id)
    except kms.exceptions.NotFoundException:
        return False
    return True


def create_key_with_alias(kms: Any, alias: str) -> str:
    """Create a symmetric encryption key, point alias at it, and return the key ARN."""
    key = kms.create_key(
        Description="cloudchain secrets key",
        KeyUsage="ENCRYPT_DECRYPT",
        KeySpec="SYMMETRIC_DEFAULT",
    )["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return str(key["Arn"])
