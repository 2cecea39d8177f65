"""The dotenv format, written so that sh, bash and python-dotenv 1.2.3 or later
(`dotenv_values()` and `load_dotenv()`) all read back each value exactly, whatever the reader's
environment holds; and read as python-dotenv reads it, minus the process environment.

- a value with no `'` and no backslash is single-quoted, which all of them read literally;
- any other value is double-quoted with `\\` and `"` backslash-escaped, the two escapes sh and
  python-dotenv share; such a value must hold no `$` and no backtick (sh expands them inside
  double quotes, python-dotenv does not). One ending in a backslash ends in `\\"`, which
  python-dotenv before 1.2.3 misreads (it takes `\\"` for an escaped quote);
- `${` is refused in any value: python-dotenv expands `${NAME}` even inside single quotes, from
  the reader's environment, and has no way to write it literally;
- so are a carriage return (python-dotenv's file reading turns it into a newline) and NUL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import ValidationError
from .entries import parse_entries


def dotenv_problem(value: str) -> str | None:
    """Why sh, bash and python-dotenv could not all read value back exactly, or None."""
    if "\r" in value:
        return "holds a carriage return, which python-dotenv reads as a newline"
    if "${" in value:
        return "holds '${', which python-dotenv expands from the reader's environment"
    if ("'" in value or "\\" in value) and ("$" in value or "`" in value):
        return "holds a quote or backslash together with '$' or a backtick"
    return None


def dotenv_line(name: str, value: str) -> str:
    """One line of the dotenv format, for a value dotenv_problem accepts."""
    if "'" not in value and "\\" not in value:
        return f"{name}='{value}'\n"
    return f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"\n'


# -- reading ------------------------------------------------------------------------------------

# Every pattern here matches in linear time: an import file is input, possibly hostile.
_DOTENV_LINE = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.\-]*)[ \t]*=[ \t]*")
_QUOTED = {
    quote: re.compile(rf"{quote}((?:\\.|[^{quote}\\])*){quote}", re.DOTALL) for quote in "'\""
}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_DOUBLE_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f",
                   "n": "\n", "r": "\r", "t": "\t", "v": "\v"}  # fmt: skip
_SINGLE_ESCAPES = {"\\": "\\", "'": "'"}
_COMMENT = re.compile(r"\s#")


def _unescape(body: str, escapes: Mapping[str, str]) -> str:
    return _ESCAPE.sub(lambda m: escapes.get(m.group(1), m.group(0)), body)


def _expand(value: str, earlier: Mapping[str, str]) -> str:
    """Expand python-dotenv's ${NAME} and ${NAME:-default} against the file's own earlier
    entries only: importing a file never pulls values out of the caller's environment.

    A scan rather than a regex: on a value with many `${` and no `}` the regex would try
    every start to the end of the value, in quadratic time.
    """
    out: list[str] = []
    pos = close = 0
    while True:
        start = value.find("${", pos)
        if start < 0:
            break
        if close < start + 2:
            close = value.find("}", start + 2)
            if close < 0:
                break  # no later `${` can be closed either
        name, colon, default = value[start + 2 : close].partition(":")
        if colon and not default.startswith("-"):
            out.append(value[pos : start + 1])  # not a variable: the `$` stays as it is
            pos = start + 1
            continue
        out.append(value[pos:start])
        out.append(earlier.get(name, default[1:]))
        pos = close + 1
    out.append(value[pos:])
    return "".join(out)


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse a dotenv file as python-dotenv does, minus the process environment; a name
    given twice is refused."""
    return parse_entries(text, _DOTENV_LINE, "dotenv", "NAME=value", _dotenv_value)


def _dotenv_value(
    text: str, pos: int, name: str, lineno: int, end_of_line: int, values: dict[str, str]
) -> tuple[str, int, int]:
    """One value: quoted (perhaps over several lines, a comment allowed after it) or bare (to
    the end of the line or a comment); ${NAME} expanded from the entries before it."""
    quote = text[pos : pos + 1]
    if quote in _QUOTED:
        body = _QUOTED[quote].match(text, pos)
        if body is None:
            raise ValidationError(f"dotenv entry {name} (line {lineno}) has no closing {quote}")
        value = _unescape(body.group(1), _DOUBLE_ESCAPES if quote == '"' else _SINGLE_ESCAPES)
        rest_end = text.find("\n", body.end())
        rest_end = len(text) if rest_end < 0 else rest_end
        rest = text[body.end() : rest_end].strip()
        if rest and not rest.startswith("#"):
            raise ValidationError(f"dotenv entry {name} (line {lineno}) has text after its quote")
        lineno += text.count("\n", pos, rest_end)
        pos = rest_end
    else:
        value = text[pos:end_of_line]
        comment = _COMMENT.search(value)
        value = (value[: comment.start()] if comment else value).strip()
        pos = end_of_line
    return _expand(value, values), pos, lineno
