"""The json format: {user: secret}, sorted, a binary secret as {"base64": "..."}; and reading
it back for --import, with the depth and duplicate-key checks hostile input needs."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

from ..errors import ValidationError

# JSON strings, so that brackets inside them are not counted as nesting.
_JSON_STRING = re.compile(r'"(?:\\.|[^"\\])*"', re.DOTALL)
_JSON_BRACKETS = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# An import file is a JSON object of {user: secret or {"base64": ...}}: two levels. Anything
# much deeper is refused before the parser, whose recursion a deep enough nesting exhausts.
MAX_JSON_DEPTH = 20


def _json_value(value: str | bytes) -> str | dict[str, str]:
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return value


def render_json(secrets: Mapping[str, str | bytes]) -> str:
    """The json export: raw usernames, sorted; every value carried exactly."""
    data = {user: _json_value(value) for user, value in secrets.items()}
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def _json_depth(text: str) -> int:
    brackets = _JSON_BRACKETS.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValidationError(f"the import file gives the key {key!r} twice")
        seen[key] = value
    return seen


def parse_json(text: str) -> dict[str, str | bytes]:
    """Parse a JSON import file: {user: secret}, {"base64": "..."} standing for bytes."""
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise ValidationError(f"the import file nests JSON deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        raise ValidationError(
            f"the import file is not valid JSON: {err.msg} at line {err.lineno}"
        ) from None
    if not isinstance(data, dict):
        raise ValidationError("the import file must hold a JSON object of {user: secret}")
    entries: dict[str, str | bytes] = {}
    for user, value in data.items():
        if isinstance(value, dict) and set(value) == {"base64"}:
            try:
                entries[user] = base64.b64decode(value["base64"], validate=True)
            except (binascii.Error, TypeError):
                raise ValidationError(f"import entry {user!r} is not valid base64") from None
        elif isinstance(value, str):
            entries[user] = value
        else:
            raise ValidationError(f'import entry {user!r} is not a string or {{"base64": ...}}')
    return entries
