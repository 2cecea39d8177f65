"""The export and import formats, one module each (json, dotenv, env, github; yaml,
properties, tfvars and k8s, keyed by username, in keyed.py), and what they share: variable
names (names.py), and the check of every value before the first byte is written.

A value a format cannot carry is never written some other way: the export is refused naming
every such secret at once, or with skip, those are left out and named for a warning. A binary
secret is refused by dotenv, env, github, properties, tfvars and the environment unless it is
exported as base64, under its variable name (or username) and BASE64_SUFFIX.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import NamedTuple

from ..errors import CloudChainError, ValidationError
from .dotenv import dotenv_line, dotenv_problem, parse_dotenv
from .env import MAX_ENV_STRING, env_line, environment_problem, parse_env
from .github import github_problem, mask_lines, render_github
from .json import parse_json, render_json
from .keyed import KEYED_FORMATS, check_keyed_options, keyed_entries, render_keyed
from .libraries import check_writers
from .names import (
    BASE64_SUFFIX,
    LOADER_PREFIXES,
    LOADER_VARIABLES,
    check_loader_variables,
    check_prefix,
    env_name,
    env_names,
    users_for_variables,
)

__all__ = [
    "BASE64_SUFFIX",
    "FORMATS",
    "KEYED_FORMATS",
    "LOADER_PREFIXES",
    "LOADER_VARIABLES",
    "MAX_ENV_STRING",
    "VARIABLE_FORMATS",
    "Exported",
    "Refused",
    "check_keyed_options",
    "check_loader_variables",
    "check_prefix",
    "check_writers",
    "decode_base64_variables",
    "describe",
    "env_name",
    "env_names",
    "environment",
    "import_format",
    "parse_dotenv",
    "parse_import",
    "render",
    "render_export",
    "users_for_variables",
]

FORMATS = ("json", "dotenv", "env", "yaml", "tfvars", "properties", "k8s", "github")
IMPORT_FORMATS = ("json", "dotenv", "env")
# The formats whose names are environment variables (--prefix, --allow-env apply).
VARIABLE_FORMATS = ("dotenv", "env", "github")
_WHERE = {
    "dotenv": "as dotenv that sh, bash and python-dotenv all read back exactly",
    "env": "as env lines",
    "exec": "in the environment",
    "github": "as a $GITHUB_ENV file that the Actions runner reads back exactly",
    "yaml": "as YAML that PyYAML reads back exactly",
    "properties": "as Java properties",
    "tfvars": "as Terraform variables",
    "k8s": "in a Kubernetes Secret",
}


class Refused(NamedTuple):
    """A secret a format cannot carry: its user, variable name and why (never its value)."""

    user: str
    name: str
    reason: str
    binary: bool = False

    def __str__(self) -> str:
        return f"{self.name} (user {self.user!r}) {self.reason}"


class Exported(NamedTuple):
    """An export's whole text, the secrets skip left out of it, and what goes to stdout
    before the text is written anywhere (github's ::add-mask:: lines)."""

    text: str
    skipped: tuple[Refused, ...] = ()
    preamble: str = ""


def describe(refused: tuple[Refused, ...] | list[Refused]) -> str:
    """Name every refused secret and why, on one line."""
    return "; ".join(map(str, refused))


def _refusal(fmt: str, refused: list[Refused]) -> CloudChainError:
    ways = ["--format env or --format json"] if fmt == "dotenv" else []
    if fmt not in ("dotenv", "exec", "yaml"):  # json carries everything; yaml refuses nothing
        ways.append("--format json")
    if any(r.binary for r in refused):
        ways.append("--binary base64 for binary secrets")
    ways.append("--skip-unrepresentable to leave them out")
    count = f"{len(refused)} secret{'s' if len(refused) > 1 else ''}"
    return CloudChainError(
        f"cannot write {count} {_WHERE[fmt]}: {describe(refused)}",
        hint="use " + ", ".join(ways[:-1]) + (", or " if len(ways) > 1 else "") + ways[-1],
    )


def _encode(
    fmt: str,
    secrets: Mapping[str, str | bytes],
    names: Mapping[str, str],
    binary_base64: bool,
    skip: bool,
) -> tuple[dict[str, str], tuple[Refused, ...]]:
    """Each user's value as text for fmt (dotenv, env or exec), in variable-name order."""
    texts: dict[str, str] = {}
    refused: list[Refused] = []
    for user in sorted(secrets, key=lambda u: names[u]):
        name, value = names[user], secrets[user]
        if isinstance(value, bytes):
            if not binary_base64:
                refused.append(Refused(user, name, "is a binary secret", binary=True))
                continue
            value = base64.b64encode(value).decode("ascii")
        problem = environment_problem(name, value)
        if problem is None and fmt == "dotenv":
            problem = dotenv_problem(value)
        if problem is None and fmt == "github":
            problem = github_problem(value)
        if problem is not None:
            refused.append(Refused(user, name, problem))
            continue
        texts[user] = value
    if refused and not skip:
        raise _refusal(fmt, refused)
    return texts, tuple(refused)


def _keyed(
    fmt: str,
    service: str,
    secrets: Mapping[str, str | bytes],
    binary_base64: bool,
    skip: bool,
    k8s: tuple[str | None, str | None],
) -> Exported:
    """Render a format keyed by username, refusing (or with skip, leaving out) what it
    cannot carry: what the checks find first, then what its writer would not read back."""
    entries, owners, problems = keyed_entries(fmt, service, secrets, binary_base64)
    refused = [Refused(*problem) for problem in problems]
    while True:
        if refused and not skip:
            raise _refusal(fmt, refused)
        text, wrong = render_keyed(fmt, service, entries, k8s_name=k8s[0], k8s_namespace=k8s[1])
        if not wrong:
            return Exported(text, tuple(refused))
        reason = "is a value the writer would not read back exactly"
        refused += [Refused(owners[key], key, reason) for key in wrong]
        entries = {key: value for key, value in entries.items() if key not in wrong}


def render_export(
    fmt: str,
    secrets: Mapping[str, str | bytes],
    names: Mapping[str, str],
    *,
    binary_base64: bool = False,
    skip: bool = False,
    service: str = "",
    k8s_name: str | None = None,
    k8s_namespace: str | None = None,
    github_mask: bool = False,
) -> Exported:
    """Render secrets (user -> value) in fmt; names maps users to variable names (for the
    VARIABLE_FORMATS; the others are keyed by username).

    json carries every value (a binary one as {"base64": "..."}). The others refuse what
    they cannot carry, naming all of it, unless skip: then it is left out and returned.
    """
    if fmt == "json":
        return Exported(render_json(secrets))
    if fmt in KEYED_FORMATS:
        return _keyed(fmt, service, secrets, binary_base64, skip, (k8s_name, k8s_namespace))
    texts, skipped = _encode(fmt, secrets, names, binary_base64, skip)
    if fmt == "github":
        entries = {names[user]: text for user, text in texts.items()}
        preamble = mask_lines(list(texts.values())) if github_mask else ""
        return Exported(render_github(entries), skipped, preamble)
    line = dotenv_line if fmt == "dotenv" else env_line
    return Exported("".join(line(names[user], text) for user, text in texts.items()), skipped)


def render(fmt: str, secrets: Mapping[str, str | bytes], names: Mapping[str, str]) -> str:
    """Render secrets in fmt, refusing (naming every one) a value fmt cannot carry."""
    return render_export(fmt, secrets, names).text


def environment(
    secrets: Mapping[str, str | bytes],
    names: Mapping[str, str],
    *,
    binary_base64: bool = False,
    skip: bool = False,
) -> tuple[dict[str, str], tuple[Refused, ...]]:
    """Return {variable: value} for secrets, and what skip left out; as render_export."""
    texts, skipped = _encode("exec", secrets, names, binary_base64, skip)
    return {names[user]: text for user, text in texts.items()}, skipped


def import_format(text: str, fmt: str | None = None) -> str:
    """The format of an import file: fmt if given, else json or dotenv by its first character."""
    if fmt is None:
        return "json" if text.removeprefix("\ufeff").lstrip().startswith("{") else "dotenv"
    return fmt


def decode_base64_variables(entries: Mapping[str, str | bytes]) -> dict[str, str | bytes]:
    """Turn each NAME_B64 entry (as --binary base64 exports it) back into NAME's bytes;
    entries that are not valid base64, or whose NAME is given too, are refused, naming all."""
    decoded: dict[str, str | bytes] = {}
    invalid: list[str] = []
    for name, value in entries.items():
        if not name.endswith(BASE64_SUFFIX) or not isinstance(value, str):
            decoded[name] = value
            continue
        try:
            decoded[name[: -len(BASE64_SUFFIX)]] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            invalid.append(f"{name} is not valid base64")
    invalid += [
        f"{name} and {name}{BASE64_SUFFIX} are both given"
        for name in entries
        if f"{name}{BASE64_SUFFIX}" in entries
    ]
    if invalid:
        raise ValidationError(f"--binary base64: {'; '.join(invalid)}")
    return decoded


def parse_import(text: str, fmt: str | None = None) -> dict[str, str | bytes]:
    """Parse an import file: a JSON object {user: secret}, dotenv, or env (given, never
    detected: sh and dotenv read backslashes differently); json or dotenv is detected.

    In JSON, {"base64": "..."} stands for a binary secret, as --export writes it.
    """
    text = text.removeprefix("\ufeff")
    fmt = import_format(text, fmt)
    if fmt not in IMPORT_FORMATS:
        raise ValidationError(f"cannot import the {fmt} format; use json, dotenv or env")
    if fmt == "dotenv":
        return dict(parse_dotenv(text))
    if fmt == "env":
        return dict(parse_env(text))
    return parse_json(text)
