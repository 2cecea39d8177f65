"""Environment-variable names and the export/import file formats (json, dotenv, env).

dotenv is written so that sh, bash and python-dotenv (`dotenv_values()` and `load_dotenv()`)
all read back each value exactly, whatever the reader's environment holds:

- a value with no `'` and no backslash is single-quoted, which all of them read literally;
- any other value is double-quoted with `\\` and `"` backslash-escaped, the two escapes sh and
  python-dotenv share; such a value must hold no `$` and no backtick (sh expands them inside
  double quotes, python-dotenv does not) and must not end with a backslash (python-dotenv
  before 1.2.2 misreads it);
- `${` is refused in any value: python-dotenv expands `${NAME}` even inside single quotes, from
  the reader's environment, and has no way to write it literally;
- so are a carriage return (python-dotenv's file reading turns it into a newline) and NUL.

What is refused names its variable and points to --format env or json, which carry anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

from .errors import CloudChainError, ValidationError

FORMATS = ("json", "dotenv", "env")
_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Linux's limit on one environment string, NAME=value and its NUL included (MAX_ARG_STRLEN).
MAX_ENV_STRING = 128 * 1024

# Variables that change how programs are found, loaded or run. A secret that would set one
# could run code in every process that loads the service's secrets, so it is refused unless
# the caller names the variable with --allow-env.
LOADER_VARIABLES = frozenset(
    {
        "PATH", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "PROMPT_COMMAND",
        "CDPATH", "ZDOTDIR", "PERL5LIB", "PERLLIB", "PERL5OPT", "PERL5DB", "RUBYOPT", "RUBYLIB",
        "NODE_OPTIONS", "NODE_PATH", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS",
        "GCONV_PATH", "GLIBC_TUNABLES", "LOCPATH", "NLSPATH", "HOSTALIASES", "RES_OPTIONS",
        "LOCALDOMAIN",
    }
)  # fmt: skip
LOADER_PREFIXES = ("LD_", "DYLD_", "PYTHON", "BASH_FUNC_")


def env_name(user: str, prefix: str = "") -> str:
    """Map a username to an environment variable name: DB-password -> DB_PASSWORD, 9x -> _9X."""
    name = re.sub(r"[^A-Z0-9_]", "_", user.upper())
    if name[:1].isdigit():
        name = "_" + name
    return prefix + name


def check_prefix(prefix: str) -> str:
    """Return prefix after checking it can start an environment variable name."""
    if prefix and not _NAME_OK.match(prefix):
        raise ValidationError(f"--prefix {prefix!r} cannot start an environment variable name")
    return prefix


def env_names(service: str, users: list[str], prefix: str = "") -> dict[str, str]:
    """Map each user to its variable name; two users on one name are an error naming both."""
    owner: dict[str, str] = {}
    for user in sorted(users):
        name = env_name(user, prefix)
        if name in owner:
            raise CloudChainError(
                f"users {owner[name]!r} and {user!r} of service {service} both map to the "
                f"variable {name}; rename one of them"
            )
        owner[name] = user
    return {user: name for name, user in owner.items()}


def _check_env_value(name: str, value: str) -> None:
    if "\0" in value:
        raise CloudChainError(f"{name} holds a NUL character, which no environment variable can")
    size = len(name.encode()) + 1 + len(value.encode("utf-8", "surrogatepass")) + 1
    if size > MAX_ENV_STRING:
        raise CloudChainError(
            f"{name} is {size} bytes as an environment variable; the limit is {MAX_ENV_STRING}"
        )


def _single_quoted_for_sh(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _refuse_dotenv(name: str, reason: str) -> CloudChainError:
    return CloudChainError(
        f"{name} cannot be written as dotenv that sh, bash and python-dotenv all read back "
        f"exactly ({reason}); use --format env or --format json"
    )


def _dotenv_value(name: str, value: str) -> str:
    if "\r" in value:
        raise _refuse_dotenv(name, "it holds a carriage return")
    if "${" in value:
        raise _refuse_dotenv(name, "python-dotenv expands '${' from the reader's environment")
    if "'" not in value and "\\" not in value:
        return f"'{value}'"
    if "$" in value or "`" in value:
        raise _refuse_dotenv(name, "a quote or backslash together with '$' or a backtick")
    if value.endswith("\\"):
        raise _refuse_dotenv(name, "it ends with a backslash")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_loader_variables(
    service: str, names: Mapping[str, str], allowed: frozenset[str] | set[str] = frozenset()
) -> None:
    """Refuse any secret (user -> variable name) that would set a loader variable not allowed."""
    for user in sorted(names, key=lambda u: names[u]):
        name = names[user]
        loader = name in LOADER_VARIABLES or name.startswith(LOADER_PREFIXES)
        if loader and name not in allowed:
            raise ValidationError(
                f"secret {user!r} of service {service} would set {name}, which changes how "
                f"programs are found, loaded or run; refused (--allow-env {name} allows it)"
            )


def text_for_environment(name: str, value: str | bytes) -> str:
    """Return value for an environment variable, refusing what none can hold."""
    if isinstance(value, bytes):
        raise CloudChainError(
            f"{name} is a binary secret, which cannot go in an environment variable; "
            "use --format json"
        )
    _check_env_value(name, value)
    return value


def _json_value(value: str | bytes) -> str | dict[str, str]:
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return value


def render(fmt: str, secrets: Mapping[str, str | bytes], names: Mapping[str, str]) -> str:
    """Render secrets (user -> value) in fmt; names maps users to variable names.

    In json a binary secret is {"base64": "..."}; dotenv and env refuse it, naming it.
    """
    if fmt == "json":
        data = {user: _json_value(value) for user, value in secrets.items()}
        return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    lines = []
    for user in sorted(secrets, key=lambda u: names[u]):
        name = names[user]
        value = text_for_environment(name, secrets[user])
        if fmt == "dotenv":
            lines.append(f"{name}={_dotenv_value(name, value)}\n")
        else:
            lines.append(f"export {name}={_single_quoted_for_sh(value)}\n")
    return "".join(lines)


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
# JSON strings, so that brackets inside them are not counted as nesting.
_JSON_STRING = re.compile(r'"(?:\\.|[^"\\])*"', re.DOTALL)
_JSON_BRACKETS = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# An import file is a JSON object of {user: secret or {"base64": ...}}: two levels. Anything
# much deeper is refused before the parser, whose recursion a deep enough nesting exhausts.
MAX_JSON_DEPTH = 20


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
    values: dict[str, str] = {}
    pos, lineno = 0, 1
    while pos < len(text):
        end_of_line = text.find("\n", pos)
        end_of_line = len(text) if end_of_line < 0 else end_of_line
        line = text[pos:end_of_line]
        if not line.strip() or line.lstrip().startswith("#"):
            pos, lineno = end_of_line + 1, lineno + 1
            continue
        match = _DOTENV_LINE.match(text, pos)
        if match is None or match.end() > end_of_line:
            raise ValidationError(f"dotenv line {lineno} is not NAME=value")
        name, first_line, pos = match.group(1), lineno, match.end()
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
                raise ValidationError(
                    f"dotenv entry {name} (line {lineno}) has text after its quote"
                )
            lineno += text.count("\n", pos, rest_end)
            pos = rest_end
        else:
            value = text[pos:end_of_line]
            comment = _COMMENT.search(value)
            value = (value[: comment.start()] if comment else value).strip()
            pos = end_of_line
        if name in values:
            raise ValidationError(
                f"dotenv entry {name} is given twice (again on line {first_line})"
            )
        values[name] = _expand(value, values)
        pos, lineno = pos + 1, lineno + 1
    return values


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


def parse_import(text: str, fmt: str | None = None) -> dict[str, str | bytes]:
    """Parse an import file: a JSON object {user: secret} or dotenv, detected unless given.

    In JSON, {"base64": "..."} stands for a binary secret, as --export writes it.
    """
    text = text.removeprefix("\ufeff")
    if fmt is None:
        fmt = "json" if text.lstrip().startswith("{") else "dotenv"
    if fmt == "dotenv":
        return dict(parse_dotenv(text))
    if fmt != "json":
        raise ValidationError(f"cannot import the {fmt} format; use json or dotenv")
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
