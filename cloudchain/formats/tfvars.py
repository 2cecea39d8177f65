"""The tfvars format: `name = "value"` lines of HCL, for Terraform's `-var-file`.

No Python library writes HCL that a Terraform reader reads back exactly (python-hcl2's writer
takes its own parse output, strings still in source form), so it is written here, by HCL's
quoted-template rules: `\\`, `"`, newline, carriage return and tab escaped as `\\\\`, `\\"`,
`\\n`, `\\r`, `\\t`; other control characters (and U+FEFF) as `\\uNNNN`; and the `{` of `${`
and `%{` as `\\u007b`, so that Terraform never reads a secret as an interpolation or a
directive. (HCL's own `$${` escape would do for Terraform, but python-hcl2 cannot read `$${`
without a closing brace after it; a `$` or `%` followed by an escape is a plain character to
both.) Refused: a value Terraform would change (its values, cty strings, are normalized to
Unicode NFC), a name that is not an HCL identifier or that Terraform reserves for itself,
and a binary secret unless as base64.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
# Names Terraform refuses for a variable (its "reserved variable names").
RESERVED = frozenset(
    {"source", "version", "providers", "count", "for_each", "lifecycle", "depends_on", "locals"}
)
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Also escaped: the line and paragraph separators, and U+FEFF, which HCL refuses as a BOM.
_SPECIAL = re.compile(r'[\\"\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]')
_TEMPLATE = re.compile(r"([$%])\{")


def tfvars_name_problem(name: str) -> str | None:
    """Why name cannot be a Terraform variable's, or None."""
    if not _IDENTIFIER.match(name):
        return "is not a Terraform variable name (letters, digits, _ and -, not first a digit)"
    if name in RESERVED:
        return "is a name Terraform reserves, not a variable's"
    return None


def tfvars_problem(value: str) -> str | None:
    """Why Terraform could not read value back exactly, or None."""
    if not unicodedata.is_normalized("NFC", value):
        return "is not in Unicode NFC, which Terraform normalizes every string to"
    return None


def _escape(char: str) -> str:
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def hcl_string(value: str) -> str:
    """value as an HCL quoted template that reads back as exactly value."""
    body = _SPECIAL.sub(lambda m: _escape(m.group()), value)
    return '"' + _TEMPLATE.sub(r"\1\\u007b", body) + '"'


def render_tfvars(entries: Mapping[str, str]) -> str:
    """`name = "value"` lines for entries (name -> text) that passed the two checks above."""
    return "".join(f"{name} = {hcl_string(value)}\n" for name, value in entries.items())
