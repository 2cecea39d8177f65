"""The item layout: how one row of the table holds a secret and its versions. No AWS calls.

One item per (Service, Username). The current version sits in the reference attributes, so the
AWS CLI recovery recipe keeps working; older retained versions sit in a History list:

    Service    S     hash key
    Username   S     range key
    Secret     S|B   the current version's ciphertext (S: base64, the reference format; B: an
                     envelope blob). Absent while the secret is deleted.
    Version    N     current version (absent on items written before versions: read as 1)
    SavedAt    S     ISO 8601 UTC time of the current version
    Context    S     comma-separated encryption-context keys of Secret
    Scheme     S     "direct" or "envelope-v1" (absent: direct)
    Binary     BOOL  true when the secret was saved as bytes (absent: text)
    KeyId      S     ARN of the KMS key that encrypted Secret (informational)
    Digest     S     SHA-256 of the Secret bytes, hex
    WriteId    S     random id of the write that created this version
    SavedBy    S     ARN of the caller that created it ("unknown" when STS did not say)
    Action     S     save, rollback, import, delete or undelete
    Comment    S     why, as the writer gave it
    NotAfter   S     ISO 8601 UTC time the value expires on its own (a third-party token's
                     expiry): from then on the secret is due for rotation. It belongs to the
                     value, so it moves into History with it. Absent: no hard expiry.
    Source     S     an imported version's origin: the source and the name there, as
                     `credstash:TABLE:NAME`, `ssm:/PATH` or `secretsmanager:NAME`
    SourceVersion S  that source's id of the version (a re-run skips what it finds here)
    SourceTime S     ISO 8601 UTC time the source recorded for the version, when it has
                     one (SavedAt stays the time of the import)
    History    L     older versions, newest first: maps of the per-version attributes above
    Revision   N     incremented by every write; every write is conditional on it
    LastWriteId S    WriteId of the last write of any kind
    Retention  N     versions kept for this secret, the current one included
    Tags       M     tags of the secret (not of a version): {key: {"S": value}}
    ExpiresAt  N     epoch seconds; set on a deleted secret, DynamoDB's TTL attribute
    RotateEvery N    the secret's rotation period in seconds: it is due once its current
                     version is that old. Kept by every write (saves, rollbacks, deletes and
                     undeletes) until changed. Absent: no schedule.
    Pending    M     the one pending (staged) version, shaped like a History entry; readers of
                     the reference attributes never see it
    Rotating   M     a rotation's lease: {Id: S, Until: N epoch seconds}

An item holding nothing but Service, Username and Secret is a reference row: it may be
decrypted through the legacy contexts. Anything else this project writes rules that out.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .errors import IntegrityError
from .stored import Lease as Lease
from .stored import RowState as RowState
from .stored import StoredItem as StoredItem
from .stored import StoredVersion as StoredVersion

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
WRITE_ID = "WriteId"
SAVED_BY = "SavedBy"
ACTION = "Action"
COMMENT = "Comment"
SOURCE = "Source"
SOURCE_VERSION = "SourceVersion"
SOURCE_TIME = "SourceTime"
HISTORY = "History"
REVISION = "Revision"
LAST_WRITE_ID = "LastWriteId"
RETENTION = "Retention"
TAGS = "Tags"
EXPIRES_AT = "ExpiresAt"
NOT_AFTER = "NotAfter"
ROTATE_EVERY = "RotateEvery"
PENDING = "Pending"
ROTATING = "Rotating"
# The whole reference layout: only an item with no other attribute is a reference row.
REFERENCE_ATTRIBUTES = frozenset({SERVICE, USERNAME, SECRET})
DELETE = "delete"
ABORT = "abort"
# The actions whose version holds no value: a delete's record, an aborted pending version's.
EMPTY_ACTIONS = frozenset({DELETE, ABORT})
# DynamoDB's item limit is 400 KB; counted conservatively (below also moto's 405,000), so an
# item that passes item_size() is accepted everywhere.
ITEM_SIZE_LIMIT = 400_000


def key_of(service: str, user: str) -> dict[str, Any]:
    """Return the DynamoDB key of a row."""
    return {SERVICE: {"S": service}, USERNAME: {"S": user}}


def string_of(attrs: dict[str, Any], name: str) -> str | None:
    value = attrs.get(name, {}).get("S")
    return value if isinstance(value, str) else None


def _decode_version(
    attrs: dict[str, Any], default_version: int, where: str, reference: bool
) -> StoredVersion:
    secret = attrs.get(SECRET)
    action = string_of(attrs, ACTION)
    try:
        if action in EMPTY_ACTIONS:
            ciphertext = None  # a record with no value: whatever Secret says, it holds none
        elif secret is None:
            raise KeyError(SECRET)
        elif "B" in secret:
            ciphertext = bytes(secret["B"])
        else:
            ciphertext = base64.b64decode(secret["S"], validate=True)
        version = int(attrs[VERSION]["N"]) if VERSION in attrs else default_version
    except (KeyError, ValueError, TypeError, binascii.Error):
        raise IntegrityError(f"{where}: the Secret or Version attribute is malformed") from None
    context = string_of(attrs, CONTEXT)
    return StoredVersion(
        version=version,
        ciphertext=ciphertext,
        saved_at=string_of(attrs, SAVED_AT),
        context_keys=tuple(context.split(",")) if context else None,
        scheme=string_of(attrs, SCHEME) or "direct",
        binary=bool(attrs.get(BINARY, {}).get("BOOL", False)),
        key_arn=string_of(attrs, KEY_ID),
        digest=string_of(attrs, DIGEST),
        write_id=string_of(attrs, WRITE_ID),
        saved_by=string_of(attrs, SAVED_BY),
        action=action,
        comment=string_of(attrs, COMMENT),
        not_after=string_of(attrs, NOT_AFTER),
        source=string_of(attrs, SOURCE),
        source_version=string_of(attrs, SOURCE_VERSION),
        source_time=string_of(attrs, SOURCE_TIME),
        reference=reference,
    )


def _number(item: dict[str, Any], name: str, where: str) -> int | None:
    if name not in item:
        return None
    try:
        return int(item[name]["N"])
    except (KeyError, ValueError, TypeError):
        raise IntegrityError(f"{where}: the {name} attribute is malformed") from None


def decode(item: dict[str, Any], table: str) -> StoredItem:
    """Return the StoredItem for a raw DynamoDB item."""
    service, user = item[SERVICE]["S"], item[USERNAME]["S"]
    where = f"{service}/{user} in table '{table}'"
    history = tuple(
        # A history entry is always this project's: it never takes the legacy contexts.
        _decode_version(entry.get("M", {}), 0, f"{where}, history entry {n}", reference=False)
        for n, entry in enumerate(item.get(HISTORY, {}).get("L", []))
    )
    tags = {name: value.get("S", "") for name, value in item.get(TAGS, {}).get("M", {}).items()}
    pending = None
    if PENDING in item:
        pending = _decode_version(item[PENDING].get("M", {}), 0, f"{where}, pending", False)
    lease = None
    if ROTATING in item:
        held = item[ROTATING].get("M", {})
        lease = Lease(string_of(held, "Id") or "", _number(held, "Until", where) or 0)
    return StoredItem(
        service=service,
        user=user,
        current=_decode_version(item, 1, where, reference=set(item) <= REFERENCE_ATTRIBUTES),
        history=history,
        revision=_number(item, REVISION, where),
        last_write_id=string_of(item, LAST_WRITE_ID),
        retention=_number(item, RETENTION, where),
        tags=tags,
        expires_at=_number(item, EXPIRES_AT, where),
        rotate_every=_number(item, ROTATE_EVERY, where),
        raw_secret=item.get(SECRET),
        has_version=VERSION in item,
        pending=pending,
        lease=lease,
    )


def _encode_version(version: StoredVersion) -> dict[str, Any]:
    # Direct ciphertexts keep the reference format (base64 in an S attribute); envelope blobs
    # are stored raw (B) so that base64 does not cost a third of the 400 KB item.
    attrs: dict[str, Any] = {VERSION: {"N": str(version.version)}}
    if version.ciphertext is not None:
        if version.scheme == "direct":
            attrs[SECRET] = {"S": base64.b64encode(version.ciphertext).decode("ascii")}
        else:
            attrs[SECRET] = {"B": version.ciphertext}
    optional = {
        CONTEXT: {"S": ",".join(version.context_keys)} if version.context_keys else None,
        SAVED_AT: {"S": version.saved_at} if version.saved_at else None,
        SCHEME: {"S": version.scheme} if version.scheme != "direct" else None,
        BINARY: {"BOOL": True} if version.binary else None,
        KEY_ID: {"S": version.key_arn} if version.key_arn else None,
        DIGEST: {"S": version.digest} if version.digest else None,
        WRITE_ID: {"S": version.write_id} if version.write_id else None,
        SAVED_BY: {"S": version.saved_by} if version.saved_by else None,
        ACTION: {"S": version.action} if version.action else None,
        COMMENT: {"S": version.comment} if version.comment else None,
        NOT_AFTER: {"S": version.not_after} if version.not_after else None,
        SOURCE: {"S": version.source} if version.source else None,
        SOURCE_VERSION: {"S": version.source_version} if version.source_version else None,
        SOURCE_TIME: {"S": version.source_time} if version.source_time else None,
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
    service: str,
    user: str,
    current: StoredVersion,
    history: list[StoredVersion],
    state: RowState | None = None,
) -> dict[str, Any]:
    """Return the item for current plus history, dropping the oldest history until it fits."""
    history = list(history)
    row: dict[str, Any] = {}
    if state is not None:
        row = {
            REVISION: {"N": str(state.revision)},
            LAST_WRITE_ID: {"S": state.write_id},
            RETENTION: {"N": str(state.retention)},
        }
        if state.tags:
            row[TAGS] = {"M": {k: {"S": v} for k, v in sorted(state.tags.items())}}
        if state.expires_at is not None:
            row[EXPIRES_AT] = {"N": str(state.expires_at)}
        if state.rotate_every is not None:
            row[ROTATE_EVERY] = {"N": str(state.rotate_every)}
        if state.pending is not None:
            row[PENDING] = {"M": _encode_version(state.pending)}
        if state.lease is not None:
            held = {"Id": {"S": state.lease.holder}, "Until": {"N": str(state.lease.until)}}
            row[ROTATING] = {"M": held}
    while True:
        item = {**key_of(service, user), **_encode_version(current), **row}
        if history:
            item[HISTORY] = {"L": [{"M": _encode_version(v)} for v in history]}
        if item_size(item) <= ITEM_SIZE_LIMIT or not history:
            return item
        history.pop()
