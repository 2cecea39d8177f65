"""Environment-variable names and the export/import file formats (json, dotenv, env).

dotenv is written so that both python-dotenv's `dotenv_values()` and POSIX `sh -c 'set -a;
. ./file'` read back each value exactly:

- a value with no `'`, no backslash and no `${` is single-quoted, which both read literally;
- any other value is double-quoted, with `\\` and `"` backslash-escaped and every `$` written
  as `${CCHAIN_LITERAL_DOLLAR:-$}`: both sh and python-dotenv expand that to a plain `$`
  (and python-dotenv has no other way to write a literal `${`);
- a value that needs double quotes and also holds a backtick cannot be written for both
  (sh runs backticks inside double quotes; python-dotenv keeps the escaping backslash) and is
  refused, naming its variable; so is a carriage return, which python-dotenv's file reading
  turns into a newline.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping

from .errors import CloudChainError, ValidationError

FORMATS = ("json", "dotenv", "env")
LITERAL_DOLLAR = "${CCHAIN_LITERAL_DOLLAR:-$}"
# Expands to nothing in sh and python-dotenv; see _dotenv_value.
NOTHING = "${CCHAIN_NOTHING:-}"
_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


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


def _single_quoted_for_sh(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _dotenv_value(name: str, value: str) -> str:
    if "\r" in value:
        # python-dotenv reads a file with universal newlines: a raw CR becomes "\n", and sh
        # has no escape for it inside quotes.
        raise CloudChainError(
            f"{name} holds a carriage return, which dotenv readers turn into a newline; "
            "use --format env or json"
        )
    if "'" not in value and "\\" not in value and "${" not in value:
        return f"'{value}'"
    if "`" in value:
        raise CloudChainError(
            f"{name} cannot be written as dotenv that both sh and python-dotenv read exactly "
            "(a backtick with a quote, backslash or '${'); use --format env or json"
        )
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", LITERAL_DOLLAR)
    if value.endswith("\\"):
        # python-dotenv before 1.2.2 reads the escaped backslash before the closing quote as
        # an escaped quote, and runs on into the next lines; an empty expansion separates them.
        escaped += NOTHING
    return f'"{escaped}"'


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

_DOTENV_LINE = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.\-]*)[ \t]*=[ \t]*")
_VARIABLE = re.compile(r"\$\{([^}:]*)(?::-([^}]*))?\}")
_DOUBLE_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f",
                   "n": "\n", "r": "\r", "t": "\t", "v": "\v"}  # fmt: skip


def _unescape(body: str, escapes: Mapping[str, str]) -> str:
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(0)), body, flags=re.DOTALL)


def _expand(value: str, earlier: Mapping[str, str]) -> str:
    # python-dotenv's ${NAME} and ${NAME:-default}, resolved against the file's own earlier
    # entries only: importing a file never pulls values out of the caller's environment.
    return _VARIABLE.sub(lambda m: earlier.get(m.group(1), m.group(2) or ""), value)


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse a dotenv file as python-dotenv does, minus the process environment."""
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
        name, pos = match.group(1), match.end()
        quote = text[pos : pos + 1]
        if quote in ("'", '"'):
            body = re.compile(rf"{quote}((?:\\.|[^{quote}\\])*){quote}", re.DOTALL).match(text, pos)
            if body is None:
                raise ValidationError(f"dotenv entry {name} (line {lineno}) has no closing {quote}")
            escapes = _DOUBLE_ESCAPES if quote == '"' else {"\\": "\\", "'": "'"}
            value = _unescape(body.group(1), escapes)
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
            value = re.sub(r"\s+#.*", "", text[pos:end_of_line]).strip()
            pos = end_of_line
        values[name] = _expand(value, values)
        pos, lineno = pos + 1, lineno + 1
    return values


def parse_import(text: str, fmt: str | None = None) -> dict[str, str | bytes]:
    """Parse an import file: a JSON object {user: secret} or dotenv, detected unless given.

    In JSON, {"base64": "..."} stands for a binary secret, as --export writes it.
    """
    if fmt is None:
        fmt = "json" if text.lstrip().startswith("{") else "dotenv"
    if fmt == "dotenv":
        return dict(parse_dotenv(text))
    if fmt != "json":
        raise ValidationError(f"cannot import the {fmt} format; use json or dotenv")
    try:
        data = json.loads(text)
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
