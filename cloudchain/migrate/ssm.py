"""SSM Parameter Store in chamber's layout (`/SERVICE/KEY`): every parameter under a prefix,
with the versions GetParameterHistory still holds. Listing asks for no decryption; a
SecureString's value is fetched, decrypted by SSM, only when it is imported or verified."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from .model import SourceSecret, SourceVersion

Aws = Callable[[str, Callable[[], Any]], Any]


def iso_time(value: Any) -> str | None:
    """A botocore timestamp as ISO 8601 UTC, as SavedAt records times."""
    if not isinstance(value, datetime):
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pages(
    aws: Aws, doing: str, call: Callable[..., Any], key: str, **kwargs: Any
) -> Iterator[Any]:
    token: str | None = None
    while True:
        extra = {"NextToken": token} if token else {}
        page = aws(doing, functools.partial(call, **kwargs, **extra))
        yield from page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return


class ParameterStore:
    """The parameters under one path prefix, versions oldest first."""

    source = "ssm"

    def __init__(self, ssm: Any, aws: Aws, prefix: str) -> None:
        self._ssm, self._aws = ssm, aws
        self.prefix = prefix

    def secrets(self) -> list[SourceSecret]:
        """Every parameter under the prefix, with its history, read without decrypting."""
        names = sorted(
            parameter["Name"]
            for parameter in _pages(
                self._aws,
                f"cannot list the parameters under {self.prefix} in",
                self._ssm.get_parameters_by_path,
                "Parameters",
                Path=self.prefix,
                Recursive=True,
                WithDecryption=False,
            )
        )
        return [SourceSecret(self.source, name, self._history(name)) for name in names]

    def _history(self, name: str) -> tuple[SourceVersion, ...]:
        entries = _pages(
            self._aws,
            f"cannot read the history of parameter {name} in",
            self._ssm.get_parameter_history,
            "Parameters",
            Name=name,
            WithDecryption=False,
        )
        versions = []
        for entry in sorted(entries, key=lambda e: int(e["Version"])):
            number = str(entry["Version"])
            secure = entry.get("Type") == "SecureString"
            size = None if secure else len(str(entry.get("Value", "")).encode("utf-8"))
            versions.append(
                SourceVersion(
                    number,
                    self._reader(name, number, None if secure else str(entry.get("Value", ""))),
                    time=iso_time(entry.get("LastModifiedDate")),
                    size=size,
                )
            )
        return tuple(versions)

    def _reader(self, name: str, number: str, plain: str | None) -> Callable[[], str]:
        def read() -> str:
            if plain is not None:
                return plain
            reply = self._aws(
                f"cannot read parameter {name} version {number} in",
                lambda: self._ssm.get_parameter(Name=f"{name}:{number}", WithDecryption=True),
            )
            return str(reply["Parameter"]["Value"])

        return read
