"""The k8s format: a Kubernetes `Secret` manifest (`apiVersion: v1`, `kind: Secret`, `type:
Opaque`), every secret under `data` as the base64 of its bytes, so binary secrets are carried
as they are; written as YAML with PyYAML, for `kubectl apply -f`.

Checked before anything is read: the name (`--k8s-name`, by default the service's) is a DNS
subdomain and the namespace (`--k8s-namespace`, left out by default: kubectl's current one) a
DNS label, as the API server requires. Each key (a username) must be what the API server
takes as a Secret key; the secrets together must fit in its 1 MiB limit on one Secret.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

from ..errors import CloudChainError, ValidationError
from .yaml import dump_yaml

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_DNS_LABEL = re.compile(rf"{_LABEL}\Z")
_KEY = re.compile(r"[-._a-zA-Z0-9]+\Z")
MAX_NAME = 253
MAX_NAMESPACE = 63
# The API server's limit on the bytes of one Secret's data (corev1.MaxSecretSize).
MAX_SECRET_SIZE = 1024 * 1024


def manifest_name(name: str | None, service: str) -> str:
    """The Secret's name: --k8s-name, or the service's when it is a valid one."""
    if name is None:
        if len(service) <= MAX_NAME and _SUBDOMAIN.match(service):
            return service
        raise ValidationError(
            f"--format k8s: the service name {service!r} is not a Kubernetes object name "
            "(lowercase letters, digits, '-' and '.'); name the Secret with --k8s-name"
        )
    if len(name) > MAX_NAME or not _SUBDOMAIN.match(name):
        raise ValidationError(
            f"--k8s-name {name!r} is not a Kubernetes object name (a DNS subdomain: lowercase "
            f"letters, digits, '-' and '.', starting and ending with a letter or digit, at "
            f"most {MAX_NAME} characters)"
        )
    return name


def check_namespace(namespace: str | None) -> str | None:
    """--k8s-namespace, checked to be a DNS label as the API server requires."""
    if namespace is not None and (
        len(namespace) > MAX_NAMESPACE or not _DNS_LABEL.match(namespace)
    ):
        raise ValidationError(
            f"--k8s-namespace {namespace!r} is not a Kubernetes namespace (a DNS label: "
            f"lowercase letters, digits and '-', starting and ending with a letter or digit, "
            f"at most {MAX_NAMESPACE} characters)"
        )
    return namespace


def k8s_key_problem(key: str) -> str | None:
    """Why key cannot be a key of a Secret's data, or None."""
    if len(key) > MAX_NAME or not _KEY.match(key) or key in (".", "..") or key.startswith(".."):
        return "is not a Kubernetes Secret key (letters, digits, '-', '_' and '.', at most 253)"
    return None


def render_k8s(
    secrets: Mapping[str, bytes | str], name: str, namespace: str | None, service: str
) -> str:
    """The Secret manifest for secrets (key -> value, keys already checked)."""
    data = {key: v if isinstance(v, bytes) else v.encode("utf-8") for key, v in secrets.items()}
    size = sum(map(len, data.values()))
    if size > MAX_SECRET_SIZE:
        raise CloudChainError(
            f"cannot write service {service} as a Kubernetes Secret: its secrets are {size} "
            f"bytes, over the API server's limit of {MAX_SECRET_SIZE} on one Secret",
            hint="export part of it with --tag KEY=VALUE",
        )
    metadata = {"name": name} | ({"namespace": namespace} if namespace is not None else {})
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode("ascii") for key, value in data.items()},
    }
    return dump_yaml(manifest, "k8s", sort_keys=False)
