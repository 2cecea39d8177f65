"""The yaml format: a mapping of usernames to secrets, written with PyYAML's safe dumper.

Multi-line values are literal block scalars (`|`, with the chomping indicator the value's
line endings need); a binary secret is YAML's own `!!binary` (base64), which PyYAML's safe
loader reads back as bytes. A single-line value or a key is written plain only when it looks
like a name (`db-password`, `s3/key`) and is no word a YAML 1.1 or 1.2 reader takes for
something else (`yes`, `off`, `null`...); anything else is double-quoted, so that `0o17`,
`1e5` or `.inf` stay strings in every reader, not only in PyYAML's YAML 1.1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .libraries import writer

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*\Z")
# Booleans and nulls of YAML 1.1 (PyYAML, older Go and Ruby readers) and 1.2, any case.
_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def _style(value: str) -> str | None:
    if "\n" in value:
        return "|"  # PyYAML falls back to double quotes when a block cannot hold the value
    if _PLAIN.match(value) and value.lower() not in _WORDS:
        return None
    return '"'


def dump_yaml(data: Mapping[str, Any], fmt: str = "yaml", *, sort_keys: bool = True) -> str:
    """Write data (str keys; str, bytes or mapping values) with PyYAML's safe dumper."""
    yaml = writer("yaml", fmt)

    class Dumper(yaml.SafeDumper):  # type: ignore[name-defined,misc]
        """SafeDumper choosing each string's style as _style says."""

    def represent_str(dumper: Any, value: str) -> Any:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=_style(value))

    Dumper.add_representer(str, represent_str)
    text: str = yaml.dump(
        dict(data),
        Dumper=Dumper,
        allow_unicode=True,
        default_flow_style=False,
        sort_keys=sort_keys,
        width=2**30,  # never fold a long value over lines: some readers unfold it otherwise
    )
    return text


def load_yaml(text: str) -> Any:
    """Read text back with PyYAML's safe loader (the writer's own check of what it wrote)."""
    return writer("yaml", "yaml").safe_load(text)


def render_yaml(secrets: Mapping[str, str | bytes]) -> tuple[str, list[str]]:
    """The yaml export, and the users whose value PyYAML would not read back exactly."""
    text = dump_yaml(secrets)
    back = load_yaml(text) or {}
    wrong = [user for user in secrets if back.get(user) != secrets[user]]
    return text, wrong
