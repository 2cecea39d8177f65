"""Secrets Manager: every secret (optionally under a name prefix) with each version still
retrievable, AWSCURRENT last so that it becomes the current version; AWSPENDING, when there
is one, is a pending version. Listing decrypts nothing; GetSecretValue runs only for the
versions imported or verified (and, with --expand-json, while planning)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from .model import SourceSecret, SourceVersion, Value
from .ssm import Aws, _pages, iso_time


class SecretsManager:
    """The secrets of Secrets Manager under a name prefix, versions oldest first."""

    source = "secretsmanager"

    def __init__(self, client: Any, aws: Aws, prefix: str | None, expand_json: bool) -> None:
        self._client, self._aws = client, aws
        self.prefix = prefix
        self.expand_json = expand_json

    def secrets(self) -> list[SourceSecret]:
        """Every secret under the prefix, with its versions."""
        kwargs: dict[str, Any] = {}
        if self.prefix:
            kwargs["Filters"] = [{"Key": "name", "Values": [self.prefix]}]
        listed = _pages(
            self._aws,
            "cannot list the secrets of",
            self._client.list_secrets,
            "SecretList",
            **kwargs,
        )
        found = sorted(
            (entry["Name"], entry["ARN"])
            for entry in listed
            if not self.prefix or entry["Name"].startswith(self.prefix)
        )
        secrets = []
        for name, arn in found:
            secret = SourceSecret(self.source, name, self._versions(name, arn))
            secrets.extend(self._expanded(secret) if self.expand_json else [secret])
        return secrets

    def _versions(self, name: str, arn: str) -> tuple[SourceVersion, ...]:
        entries = list(
            _pages(
                self._aws,
                f"cannot list the versions of secret {name} in",
                self._client.list_secret_version_ids,
                "Versions",
                SecretId=arn,
                IncludeDeprecated=True,
            )
        )

        def order(entry: dict[str, Any]) -> tuple[int, Any, str]:
            stages = entry.get("VersionStages", [])
            rank = 2 if "AWSPENDING" in stages else 1 if "AWSCURRENT" in stages else 0
            return (rank, entry.get("CreatedDate") or 0, entry["VersionId"])

        return tuple(
            SourceVersion(
                entry["VersionId"],
                self._reader(name, arn, entry["VersionId"]),
                time=iso_time(entry.get("CreatedDate")),
                pending="AWSPENDING" in entry.get("VersionStages", [])
                and "AWSCURRENT" not in entry.get("VersionStages", []),
            )
            for entry in sorted(entries, key=order)
        )

    def _reader(self, name: str, arn: str, version_id: str) -> Callable[[], Value]:
        def read() -> Value:
            reply = self._aws(
                f"cannot read secret {name} version {version_id} in",
                lambda: self._client.get_secret_value(SecretId=arn, VersionId=version_id),
            )
            if "SecretBinary" in reply:
                return bytes(reply["SecretBinary"])  # binary stays binary
            return str(reply.get("SecretString", ""))

        return read

    def _expanded(self, secret: SourceSecret) -> list[SourceSecret]:
        """One secret per key of a JSON object value (a version whose value is no object is
        left as the whole secret); a key's versions are those that changed its value."""
        values = [(version, version.read()) for version in secret.versions]
        objects = [(v, _object(value)) for v, value in values]
        if not objects or any(obj is None for _, obj in objects):
            return [secret]
        keys: dict[str, list[SourceVersion]] = {}
        last: dict[str, str] = {}
        for version, obj in objects:
            assert obj is not None
            for key, value in obj.items():
                text = value if isinstance(value, str) else json.dumps(value)
                if last.get(key) == text and not version.pending:
                    continue
                last[key] = text
                keys.setdefault(key, []).append(
                    SourceVersion(
                        version.version_id,
                        functools.partial(str, text),
                        time=version.time,
                        size=len(text.encode("utf-8")),
                        pending=version.pending,
                    )
                )
        # A key the current version no longer holds was removed at the source: its old values
        # must not come back as a live secret (a pending version's new keys stay).
        current = [obj for version, obj in objects if not version.pending][-1:]
        kept = {
            *(key for obj in current for key in (obj or {})),
            *(key for version, obj in objects if version.pending for key in (obj or {})),
        }
        return [
            SourceSecret(secret.source, secret.name, tuple(versions), key=key)
            for key, versions in sorted(keys.items())
            if key in kept or not current
        ]


def _object(value: Value) -> dict[str, Any] | None:
    if isinstance(value, bytes):
        return None
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json can take
        return None
    return parsed if isinstance(parsed, dict) and parsed else None
