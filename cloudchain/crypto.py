"""Everything KMS and the local cipher: encryption contexts, direct and envelope encryption,
re-encryption. No DynamoDB here; callers wrap these in errors.aws_errors.

Two schemes:

- direct (up to 4096 bytes, the reference format): KMS Encrypt of the secret itself.
- envelope-v1 (larger secrets): KMS GenerateDataKey (AES_256) with the row's encryption
  context, then AES-256-GCM with a random 96-bit nonce and the same context as associated
  data. The blob is  b"CCE1" | u16 length of the encrypted data key | encrypted data key |
  12-byte nonce | AES-GCM ciphertext with its 16-byte tag.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from .errors import IntegrityError

DIRECT = "direct"
ENVELOPE = "envelope-v1"
ENVELOPE_MAGIC = b"CCE1"
# KMS Encrypt's plaintext limit: larger secrets use the envelope scheme.
DIRECT_LIMIT = 4096

# The encryption-context keys every new ciphertext is bound with: its row and its version, so a
# ciphertext can be neither moved to another row nor replayed as another version of its own.
VERSIONED_CONTEXT = ("Service", "Username", "Version")
# A binary secret's context also says so: whether a read returns bytes or text is then bound
# into the ciphertext, not left to the editable Binary attribute.
BINARY_CONTEXT = (*VERSIONED_CONTEXT, "Binary")


def context_keys_for(binary: bool) -> tuple[str, ...]:
    """Return the context keys a new version is bound with."""
    return BINARY_CONTEXT if binary else VERSIONED_CONTEXT


def legacy_contexts(service: str, user: str) -> list[tuple[str, dict[str, str]]]:
    """Return the contexts a row without a recorded one may use, most likely first.

    The reference (row-bound) context, cloudchain 0.x's constant context, and none at all
    (the bare reference recipe).
    """
    return [
        ("row", {"Service": service, "Username": user}),
        ("0.x", {"string": "string"}),
        ("none", {}),
    ]


def context_for(keys: tuple[str, ...], service: str, user: str, version: int) -> dict[str, str]:
    """Return the encryption context with the given keys for one version of a row."""
    values = {"Service": service, "Username": user, "Version": str(version), "Binary": "true"}
    unknown = [key for key in keys if key not in values]
    if unknown:
        raise IntegrityError(
            f"{service}/{user} version {version} records unknown context keys {unknown}"
        )
    return {key: values[key] for key in keys}


def digest(blob: bytes) -> str:
    """Return the recorded digest of a stored blob: it detects a corrupted byte before KMS."""
    return hashlib.sha256(blob).hexdigest()


def _aad(context: dict[str, str]) -> bytes:
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode("utf-8")


def encrypt(kms: Any, key_id: str, plaintext: bytes, context: dict[str, str]) -> tuple[bytes, str]:
    """Encrypt with the scheme the size calls for; return the blob and the KMS key ARN."""
    if len(plaintext) <= DIRECT_LIMIT:
        response = kms.encrypt(KeyId=key_id, Plaintext=plaintext, EncryptionContext=context)
        return bytes(response["CiphertextBlob"]), str(response["KeyId"])
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)
    nonce = os.urandom(12)
    sealed = AESGCM(data_key["Plaintext"]).encrypt(nonce, plaintext, _aad(context))
    wrapped = bytes(data_key["CiphertextBlob"])
    blob = ENVELOPE_MAGIC + struct.pack(">H", len(wrapped)) + wrapped + nonce + sealed
    return blob, str(data_key["KeyId"])


def scheme_of(plaintext_size: int) -> str:
    """Return the scheme a secret of this size is stored with."""
    return DIRECT if plaintext_size <= DIRECT_LIMIT else ENVELOPE


def split_envelope(blob: bytes) -> tuple[bytes, bytes, bytes]:
    """Return (encrypted data key, nonce, sealed) from an envelope blob, or IntegrityError."""
    if len(blob) < 6 or blob[:4] != ENVELOPE_MAGIC:
        raise IntegrityError("the envelope blob has no CCE1 header")
    (size,) = struct.unpack(">H", blob[4:6])
    wrapped, rest = blob[6 : 6 + size], blob[6 + size :]
    if len(wrapped) != size or len(rest) < 12 + 16:
        raise IntegrityError("the envelope blob is truncated")
    return wrapped, rest[:12], rest[12:]


def decrypt(kms: Any, scheme: str, blob: bytes, context: dict[str, str]) -> tuple[bytes, str]:
    """Decrypt a blob of either scheme that must have been bound to context; return the
    plaintext and the ARN of the KMS key that decrypted it."""
    # No KeyId: the blob names its key, so reads keep working after the alias moves on.
    if scheme == DIRECT:
        response = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
        return bytes(response["Plaintext"]), str(response["KeyId"])
    if scheme != ENVELOPE:
        raise IntegrityError(f"unknown encryption scheme {scheme!r}")
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    wrapped, nonce, sealed = split_envelope(blob)
    response = kms.decrypt(CiphertextBlob=wrapped, EncryptionContext=context)
    try:
        return AESGCM(response["Plaintext"]).decrypt(nonce, sealed, _aad(context)), str(
            response["KeyId"]
        )
    except InvalidTag:
        raise IntegrityError("the envelope ciphertext fails its AES-GCM check") from None


@dataclass(frozen=True)
class Reencrypted:
    """A blob moved by reencrypt: the new blob, its key, and the key it was under before."""

    blob: bytes = field(repr=False)
    key_arn: str
    source_key_arn: str


def reencrypt(
    kms: Any,
    scheme: str,
    blob: bytes,
    source: dict[str, str],
    key_id: str,
    destination: dict[str, str],
) -> Reencrypted:
    """Move a blob to key_id and the destination context inside KMS.

    Direct blobs go through ReEncrypt, so the plaintext never leaves KMS. Envelope blobs have
    only their data key re-wrapped; the AES-GCM layer is bound to the context, so it is
    re-sealed only when the context changes. KMS reports the key the blob was under, which is
    how a caller knows whether it had to move, whatever the item's KeyId attribute claims.
    """
    if scheme == DIRECT:
        response = kms.re_encrypt(
            CiphertextBlob=blob,
            SourceEncryptionContext=source,
            DestinationKeyId=key_id,
            DestinationEncryptionContext=destination,
        )
        return Reencrypted(
            bytes(response["CiphertextBlob"]), str(response["KeyId"]), str(response["SourceKeyId"])
        )
    wrapped, nonce, sealed = split_envelope(blob)
    if source != destination:
        plaintext, source_key = decrypt(kms, scheme, blob, source)
        new_blob, new_key = encrypt(kms, key_id, plaintext, destination)
        return Reencrypted(new_blob, new_key, source_key)
    response = kms.re_encrypt(
        CiphertextBlob=wrapped,
        SourceEncryptionContext=source,
        DestinationKeyId=key_id,
        DestinationEncryptionContext=destination,
    )
    rewrapped = bytes(response["CiphertextBlob"])
    new_blob = ENVELOPE_MAGIC + struct.pack(">H", len(rewrapped)) + rewrapped + nonce + sealed
    return Reencrypted(new_blob, str(response["KeyId"]), str(response["SourceKeyId"]))


def key_arn(kms: Any, key_id: str) -> str:
    """Return the ARN of the key behind a key id or alias."""
    return str(kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"])


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
