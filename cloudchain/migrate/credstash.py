"""credstash's table, read the way credstash reads it: each row holds a KMS-wrapped 64-byte
data key (half for AES-CTR, half for the HMAC), the ciphertext, its HMAC and the digest
algorithm that made it. The HMAC is checked before anything is decrypted; a row whose HMAC
does not verify is skipped, never imported. Only Scan and KMS Decrypt are called."""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import IntegrityError
from .model import SkippedVersion, SourceSecret, SourceVersion

DEFAULT_TABLE = "credential-store"
# credstash encrypts every row with this fixed counter block: each data key is used once.
LEGACY_NONCE = b"\x00" * 15 + b"\x01"
DIGESTS = ("SHA", "SHA224", "SHA256", "SHA384", "SHA512", "MD5")

Aws = Callable[[str, Callable[[], Any]], Any]


def _hash(name: str) -> Any:
    from cryptography.hazmat.primitives import hashes

    made: dict[str, Callable[[], hashes.HashAlgorithm]] = {
        "SHA": hashes.SHA1,
        "SHA224": hashes.SHA224,
        "SHA256": hashes.SHA256,
        "SHA384": hashes.SHA384,
        "SHA512": hashes.SHA512,
        "MD5": hashes.MD5,
    }
    return made[name]()


def open_row(data_key: bytes, ciphertext: bytes, expected_hmac: bytes, digest: str) -> bytes:
    """Return the plaintext of a credstash row after checking its HMAC, as credstash does."""
    from cryptography.hazmat.primitives import constant_time, hmac
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    half = len(data_key) // 2
    aes_key, hmac_key = data_key[:half], data_key[half:]
    mac = hmac.HMAC(hmac_key, _hash(digest))
    mac.update(ciphertext)
    if not constant_time.bytes_eq(mac.finalize(), expected_hmac):
        raise SkippedVersion("its HMAC does not verify (altered, or not credstash's)")
    decryptor = Cipher(algorithms.AES(aes_key), modes.CTR(LEGACY_NONCE)).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


def _text(attr: Mapping[str, Any] | None) -> str | None:
    if attr is None:
        return None
    if "S" in attr:
        return str(attr["S"])
    if "B" in attr:  # credstash stores the hex HMAC as bytes from boto3's resource
        return bytes(attr["B"]).decode("ascii", "replace")
    return None


class CredstashTable:
    """The secrets of one credstash table, versions oldest first."""

    def __init__(
        self, dynamodb: Any, kms: Any, aws: Aws, table: str, context: Mapping[str, str]
    ) -> None:
        self._dynamodb, self._kms, self._aws = dynamodb, kms, aws
        self.table = table
        self._context = dict(context)
        self.source = f"credstash:{table}"

    def _rows(self) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self._aws(
                "cannot read the rows of",
                functools.partial(self._dynamodb.scan, **kwargs),
            )
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def secrets(self) -> list[SourceSecret]:
        """Every secret of the table with every version, read without decrypting."""
        by_name: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for row in self._rows():
            name, version = _text(row.get("name")), _text(row.get("version"))
            if name is None or version is None:
                continue
            by_name.setdefault(name, []).append((version, row))
        return [
            SourceSecret(
                self.source,
                name,
                tuple(self._version(name, v, row) for v, row in sorted(rows, key=_order)),
            )
            for name, rows in sorted(by_name.items())
        ]

    def _version(self, name: str, version: str, row: dict[str, Any]) -> SourceVersion:
        contents = _text(row.get("contents")) or ""
        size = len(contents) * 3 // 4 - contents[-2:].count("=")  # base64, unpadded
        return SourceVersion(version, lambda: self._open(name, version, row), size=size)

    def _open(self, name: str, version: str, row: dict[str, Any]) -> str:
        digest = _text(row.get("digest")) or "SHA256"
        if digest not in DIGESTS:
            raise SkippedVersion(f"its digest {digest!r} is not one credstash uses")
        try:
            wrapped = base64.b64decode(_text(row.get("key")) or "", validate=True)
            ciphertext = base64.b64decode(_text(row.get("contents")) or "", validate=True)
            expected = binascii.unhexlify(_text(row.get("hmac")) or "")
        except (binascii.Error, ValueError):
            raise SkippedVersion("its key, contents or hmac attribute is malformed") from None
        data_key = self._data_key(name, version, wrapped)
        plaintext = open_row(data_key, ciphertext, expected, digest)
        try:
            return plaintext.decode("utf-8")  # credstash stores text only
        except UnicodeDecodeError:
            raise SkippedVersion("its value is not UTF-8 text, as credstash writes") from None

    def _data_key(self, name: str, version: str, wrapped: bytes) -> bytes:
        """The row's data key, unwrapped by KMS: with --source-context first, then, for a
        row stored without one (a table may hold both), with none. KMS checks the context:
        trying another can only fail, never decrypt a row under the wrong one."""
        contexts = [self._context, {}] if self._context else [{}]
        doing = f"cannot decrypt the data key of credstash secret {name} version {version} in"
        for n, context in enumerate(contexts):
            kwargs: dict[str, Any] = {"CiphertextBlob": wrapped}
            if context:
                kwargs["EncryptionContext"] = context
            try:
                reply = self._aws(doing, functools.partial(self._kms.decrypt, **kwargs))
            except IntegrityError:
                if n + 1 < len(contexts):
                    continue
                given = (
                    "with the --source-context given, nor without one"
                    if self._context
                    else "without an encryption context"
                )
                # Skipped, as a bad HMAC is: one row with a key KMS refuses (forged, damaged,
                # or under another context) must not stop the import of every other row.
                raise SkippedVersion(
                    f"cannot decrypt the data key of credstash secret {name} version {version}: "
                    f"KMS refused it {given} (give the one it was stored with: "
                    "--source-context KEY=VALUE)"
                ) from None
            return bytes(reply["Plaintext"])
        raise AssertionError("unreachable")


def _order(entry: tuple[str, Any]) -> tuple[int, str]:
    # credstash pads numeric versions to 19 digits; a hand-written one sorts after, by text.
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    version = entry[0]
    numeric = version.isascii() and version.isdigit()
    return (int(version), version) if numeric else (1 << 63, version)
