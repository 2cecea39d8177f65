"""What `cchain --doctor`'s checks share: the result of one, the ways one ends (Failed,
Skipped), and the Doctor, which holds the settings as given and what earlier checks built."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .clients import Clients
from .config import Config
from .errors import translate

OK, FAIL, SKIP = "ok", "FAIL", "skip"
PROBE_SERVICE = "cloudchain-doctor"


@dataclass(frozen=True)
class Result:
    """What one check found."""

    check: str
    status: str  # OK, FAIL or SKIP
    detail: str
    fix: str = ""


class Failed(Exception):
    """A check failed: detail says what was found, fix what to do. usable: what it checks
    can still be used by the checks that depend on it (a config file with a stray key)."""

    def __init__(self, detail: str, fix: str = "", *, usable: bool = False) -> None:
        super().__init__(detail)
        self.detail, self.fix, self.usable = detail, fix, usable


class Skipped(Exception):
    """A check does not apply here."""


@dataclass
class Doctor:
    """The checks' shared state: the settings as given, and what earlier checks built."""

    overrides: Mapping[str, Any]
    path: str | None = None
    service: str | None = None  # probe this service instead of PROBE_SERVICE
    write: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    config: Config | None = None
    sources: dict[str, str] = field(default_factory=dict)
    clients: Clients | None = None
    table: dict[str, Any] = field(default_factory=dict)  # the home table, described
    key: dict[str, Any] = field(default_factory=dict)  # the home key's metadata

    @property
    def where(self) -> str:
        """The endpoint, for messages."""
        assert self.config is not None
        return self.config.endpoint_url or "AWS's regional endpoint"

    def failed(self, doing: str, err: Exception) -> Failed:
        """Turn an AWS error into Failed, with cloudchain's message and hint."""
        assert self.config is not None and self.clients is not None
        translated = translate(err, doing, self.config.endpoint_url, self.clients.region)
        if translated is None:
            return Failed(f"{doing}: {type(err).__name__}")
        return Failed(str(translated), translated.hint or "")

    def aws(self, doing: str, call: Callable[[], Any]) -> Any:
        """Run an AWS call; a failure becomes Failed."""
        try:
            return call()
        except Exception as err:
            raise self.failed(doing, err) from err
