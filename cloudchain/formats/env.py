"""The env format: `export NAME='value'` lines that sh and bash eval exactly, and what any
environment variable can hold at all (--exec, dotenv and env alike)."""

from __future__ import annotations

import re

from ..errors import ValidationError

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
    values: dict[str, str] = {}
    pos, lineno = 0, 1
    while pos < len(text):
        end_of_line = text.find("\n", pos)
        end_of_line = len(text) if end_of_line < 0 else end_of_line
        line = text[pos:end_of_line]
        if not line.strip() or line.lstrip().startswith("#"):
            pos, lineno = end_of_line + 1, lineno + 1
            continue
        match = _ENV_LINE.match(text, pos)
        if match is None or match.end() > end_of_line:
            raise ValidationError(f"env line {lineno} is not NAME='value'")
        name, first_line, pos = match.group(1), lineno, match.end()
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
            raise ValidationError(
                f"env entry {name} (line {first_line}) is not a single-quoted value"
            )
        if name in values:
            raise ValidationError(f"env entry {name} is given twice (again on line {first_line})")
        values[name] = "".join(parts)
        pos, lineno = pos + 1, lineno + 1
    return values
