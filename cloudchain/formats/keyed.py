"""The formats keyed by username rather than by environment variable (yaml, properties,
tfvars, k8s): which key each secret goes under, what each cannot carry, and writing them.

A key is the username as written, as in json. yaml and k8s carry binary secrets as they are
(`!!binary`, base64 `data`); properties and tfvars hold text only, so a binary secret is
refused there unless exported as base64, under its username and BASE64_SUFFIX.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from ..errors import CloudChainError
from .k8s import check_namespace, k8s_key_problem, manifest_name, render_k8s
from .names import BASE64_SUFFIX
from .properties import render_properties
from .tfvars import render_tfvars, tfvars_name_problem, tfvars_problem
from .yaml import render_yaml

KEYED_FORMATS = ("yaml", "properties", "tfvars", "k8s")
_TEXT_ONLY = ("properties", "tfvars")

# (user, key, why it cannot be carried, whether it is a binary secret)
Problem = tuple[str, str, str, bool]


def _problem(fmt: str, key: str, value: str | bytes) -> str | None:
    if fmt == "tfvars":
        return tfvars_name_problem(key) or (
            tfvars_problem(value) if isinstance(value, str) else None
        )
    if fmt == "k8s":
        return k8s_key_problem(key)
    return None


def keyed_entries(
    fmt: str, service: str, secrets: Mapping[str, str | bytes], binary_base64: bool
) -> tuple[dict[str, str | bytes], dict[str, str], list[Problem]]:
    """Each secret fmt can carry as {key: value} (sorted by key) with {key: user}, and the
    problems of those it cannot; two users on one key are an error naming both."""
    entries: dict[str, str | bytes] = {}
    owners: dict[str, str] = {}
    problems: list[Problem] = []
    clashes: list[str] = []
    for user in sorted(secrets):
        key, value = user, secrets[user]
        if isinstance(value, bytes) and fmt in _TEXT_ONLY:
            if not binary_base64:
                problems.append((user, key, "is a binary secret", True))
                continue
            key, value = user + BASE64_SUFFIX, base64.b64encode(value).decode("ascii")
        problem = _problem(fmt, key, value)
        if problem is not None:
            problems.append((user, key, problem, False))
        elif key in owners:
            clashes.append(f"users {owners[key]!r} and {user!r} of service {service} both "
                           f"map to the key {key}")  # fmt: skip
        else:
            entries[key], owners[key] = value, user
    if clashes:
        raise CloudChainError("; ".join(clashes) + "; rename one of each")
    return dict(sorted(entries.items())), owners, problems


def check_keyed_options(fmt: str, service: str, name: str | None, namespace: str | None) -> None:
    """Refuse, before anything is read, a k8s name or namespace the API server would."""
    if fmt == "k8s":
        manifest_name(name, service)
        check_namespace(namespace)


def render_keyed(
    fmt: str,
    service: str,
    entries: Mapping[str, str | bytes],
    *,
    k8s_name: str | None = None,
    k8s_namespace: str | None = None,
) -> tuple[str, list[str]]:
    """fmt's text for entries, and the keys whose value the writer would not read back
    exactly (its own read-back check; none is known)."""
    if fmt == "yaml":
        return render_yaml(entries)
    if fmt == "k8s":
        name = manifest_name(k8s_name, service)
        return render_k8s(entries, name, check_namespace(k8s_namespace), service), []
    texts = {key: value for key, value in entries.items() if isinstance(value, str)}
    if fmt == "properties":
        return render_properties(texts)
    return render_tfvars(texts), []
