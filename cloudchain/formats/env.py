"""The env format: `export NAME='value'` lines that sh and bash eval exactly, and what any
environment variable can hold at all (--exec, dotenv and env alike)."""

from __future__ import annotations

import re

from ..errors import ValidationError
from .entries import parse_entries

# Linux's limit on one environment string, NAME=value and its NUL included (MAX_ARG_STRLEN).
MAX_ENV_STRING = 128 * 1024


def environment_problem(name: str, value: str) -> str | None:
    """Why value cannot be an environment variable's, or None if it can."""
    if "\0" in value:
        return "holds a NUL character, which no environment variable can"
    size = len(name.encode()) + 1 + len(value.encode("utf-8", "surrogatepass")) + 1
    if size > MAX_ENV_STRING:
        return f"is {size} bytes as an environment variable, over the limit of {MAX_ENV_STRING}"
    return None


def single_quoted_for_sh(value: str) -> str:
    """Quote value for sh: inside single quotes nothing is special but the quote itself."""
    return "'" + value.replace("'", "'\\''") + "'"


def env_line(name: str, value: str) -> str:
    """One line of the env format."""
    return f"export {name}={single_quoted_for_sh(value)}\n"


# -- reading ------------------------------------------------------------------------------------

_ENV_LINE = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=")


def parse_env(text: str) -> dict[str, str]:
    """Parse what the env format writes: NAME='…' lines (export optional), a value being sh
    single-quoted strings and \\' joined; blank lines and # comments are skipped. Anything
    else (a $, an unquoted word) is refused rather than guessed at, as sh would expand it."""
    return parse_entries(text, _ENV_LINE, "env", "NAME='value'", _env_value)


def _env_value(
    text: str, pos: int, name: str, lineno: int, end_of_line: int, values: dict[str, str]
) -> tuple[str, int, int]:
    """One value: single-quoted strings and \\' joined, then the end of the line."""
    first_line = lineno
    parts: list[str] = []
    while True:
        if text.startswith("'", pos):
            close = text.find("'", pos + 1)
            if close < 0:
                raise ValidationError(f"env entry {name} (line {first_line}) has no closing '")
            parts.append(text[pos + 1 : close])
            lineno += text.count("\n", pos, close)
            pos = close + 1
        elif text.startswith("\\'", pos):
            parts.append("'")
            pos += 2
        else:
            break
    if not parts or text[pos : pos + 1] not in ("", "\n"):
        raise ValidationError(f"env entry {name} (line {first_line}) is not a single-quoted value")
    return "".join(parts), pos, lineno
