"""Input checks that run before any AWS call, so bad input never costs a request or half a write."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from .errors import ValidationError

# DynamoDB's limits on a partition key and a sort key value, in UTF-8 bytes.
MAX_SERVICE_BYTES = 2048
MAX_USER_BYTES = 1024
# The largest secret: envelope-encrypted, it must still fit, as raw bytes with its encrypted
# data key, nonce and tag, in one 400 KB DynamoDB item (the current version alone).
MAX_SECRET_BYTES = 384 * 1024


def _utf8(value: str, what: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"the {what} is not valid Unicode text") from None


def check_name(value: object, what: str, limit: int) -> str:
    """Return a service or user name after checking it is a non-empty str within DynamoDB's limit."""
    if not isinstance(value, str):
        raise ValidationError(f"the {what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValidationError(f"the {what} must not be empty")
    size = len(_utf8(value, what))
    if size > limit:
        raise ValidationError(f"the {what} is {size} bytes of UTF-8; the limit is {limit}")
    return value


# Characters that can forge or hide output when a name is printed: C0 and C1 controls (newline,
# tab, ESC...), line and paragraph separators, and the bidirectional overrides of "Trojan
# Source". New names may not hold them; stored ones are escaped when printed (see shown()).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def check_printable(value: str, what: str) -> str:
    """Return value after checking it holds no control or direction-changing character."""
    bad = _UNPRINTABLE.search(value)
    if bad:
        raise ValidationError(
            f"the {what} {shown(value)} holds the control character "
            f"U+{ord(bad.group()):04X}; names must be printable"
        )
    return value


def shown(name: str) -> str:
    """Return a stored name safe to print on one line: if it holds control characters, they
    become escapes such as \\n or \\x1b (and backslashes are doubled, so the escapes read
    unambiguously); a printable name is returned as it is."""
    if not _UNPRINTABLE.search(name):
        return name
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], name.replace("\\", "\\\\"))


def check_service(service: object) -> str:
    """Return a service name after checking it."""
    return check_name(service, "service", MAX_SERVICE_BYTES)


def check_row(service: object, user: object) -> tuple[str, str]:
    """Return (service, user) after checking both."""
    return check_service(service), check_name(user, "user", MAX_USER_BYTES)


def check_new_row(service: object, user: object) -> tuple[str, str]:
    """Return (service, user) for a write that may create the row: printable names only."""
    service, user = check_row(service, user)
    return check_printable(service, "service"), check_printable(user, "user")


def secret_bytes(secret: object, service: str, user: str) -> tuple[bytes, bool]:
    """Return (the secret as bytes, whether it is binary) after checking its type and size.

    A str is stored as UTF-8 text; bytes are stored as they are and read back as bytes.
    Never echo the value.
    """
    if isinstance(secret, str):
        data, binary = _utf8(secret, f"secret for {service}/{user}"), False
    elif isinstance(secret, (bytes, bytearray, memoryview)):
        data, binary = bytes(secret), True
    else:
        raise ValidationError(
            f"the secret for {service}/{user} must be str or bytes, not {type(secret).__name__}"
        )
    if not data:
        raise ValidationError(f"the secret for {service}/{user} must not be empty")
    if len(data) > MAX_SECRET_BYTES:
        raise ValidationError(
            f"the secret for {service}/{user} is {len(data)} bytes; the limit is {MAX_SECRET_BYTES}"
        )
    return data, binary


def import_entries(service: str, mapping: Mapping[str, object]) -> dict[str, tuple[bytes, bool]]:
    """Check every entry of an import before any AWS call: {user: (bytes, binary)}.

    Empty values are named all at once (an export's file may hold several); the first
    other problem is named as a save would name it.
    """
    service = check_service(service)
    empty = [u for u, v in mapping.items() if isinstance(v, (str, bytes)) and len(v) == 0]
    if empty:
        rows = ", ".join(f"{service}/{shown(u)}" for u in sorted(empty))
        some = "secret for" if len(empty) == 1 else f"{len(empty)} secrets for"
        raise ValidationError(f"the {some} {rows} must not be empty; nothing was written")
    return {
        check_new_row(service, user)[1]: secret_bytes(value, service, user)
        for user, value in mapping.items()
    }


MAX_COMMENT = 256
MAX_TAGS = 50
MAX_TAG_VALUE = 256
_TAG_KEY = re.compile(r"[A-Za-z0-9_.:/=+@-]{1,128}")


def check_comment(comment: object) -> str | None:
    """Return a write's comment after checking it: text of at most 256 characters, printable."""
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise ValidationError(f"a comment must be a str, not {type(comment).__name__}")
    if len(comment) > MAX_COMMENT:
        raise ValidationError(f"a comment is at most {MAX_COMMENT} characters, not {len(comment)}")
    return check_printable(comment, "comment") or None


def check_tag_key(key: object) -> str:
    """Return a tag key after checking it: 1 to 128 of A-Z a-z 0-9 _ . : / = + @ -."""
    if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
        raise ValidationError(
            f"the tag key {key!r} must be 1 to 128 characters of A-Z a-z 0-9 _ . : / = + @ -"
        )
    return key


def check_tags(tags: object) -> dict[str, str]:
    """Return tags {key: value} after checking every key and value, and how many there are."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise ValidationError(f"tags must be a dict of str, not {type(tags).__name__}")
    if len(tags) > MAX_TAGS:
        raise ValidationError(f"a secret holds at most {MAX_TAGS} tags, not {len(tags)}")
    for key, value in tags.items():
        check_tag_key(key)
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE:
            raise ValidationError(
                f"the value of tag {key} must be a str of at most {MAX_TAG_VALUE} characters"
            )
        check_printable(value, f"value of tag {key}")
    return dict(tags)


def check_whole(value: object, what: str, minimum: int = 1) -> int:
    """Return value after checking it is a whole number (not a bool) of at least minimum."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(f"{what} must be a whole number of at least {minimum}, not {value!r}")
    return value


def check_version(version: object, minimum: int = 1) -> int:
    """Return a version number after checking it."""
    return check_whole(version, "a version", minimum)


def check_seconds(value: object, what: str, zero_ok: bool = False) -> float:
    """Return a duration in seconds after checking it is a number above (or at) zero."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (value >= 0 if zero_ok else value > 0):  # type: ignore[operator]
        bound = "0 or more" if zero_ok else "more than 0"
        raise ValidationError(f"{what} must be a number of seconds, {bound}, not {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_choice(value: object, what: str, choices: tuple[str, ...]) -> str:
    """Return value after checking it is one of choices."""
    if value not in choices:
        raise ValidationError(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


class EndpointValueError(ValueError):
    """An endpoint URL that is not one."""


def check_endpoint(url: object) -> str:
    """Return url if it is an http(s) URL with a host (and a port, if any, that is a number),
    else raise EndpointValueError: botocore would fail on it with a traceback."""
    text = str(url)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointValueError(f"{shown(text)!r} is not an http(s) URL such as "
                                 "http://127.0.0.1:5000")  # fmt: skip
    return text


def merged_tags(
    current: Mapping[str, str], tags: Mapping[str, str] | None, untag: Collection[str]
) -> dict[str, str]:
    """Return current with tags set and untag removed, refusing more than MAX_TAGS."""
    result = {k: v for k, v in current.items() if k not in untag}
    result.update(tags or {})
    if len(result) > MAX_TAGS:
        raise ValidationError(f"a secret holds at most {MAX_TAGS} tags, not {len(result)}")
    return result


STAGES = ("current", "pending", "previous")


def check_stage(stage: str, allowed: tuple[str, ...] = STAGES) -> str:
    """Return a staging label, refusing one that is not among allowed."""
    if stage not in allowed:
        raise ValidationError(f"stage must be {' or '.join(allowed)}, not {shown(str(stage))}")
    return stage
