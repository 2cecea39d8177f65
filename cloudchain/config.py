"""Configuration: the settings table (every setting, where it may be set, how its text is
parsed) and the frozen Config they resolve to. Where the values come from (the file, the
environment, flags) and the precedence between them are config_sources.py's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from .errors import CloudChainConfigError, RegionNameError, ValidationError
from .region_names import check_region, region_hint
from .validation import (
    EndpointValueError,
    check_choice,
    check_endpoint,
    check_seconds,
    check_whole,
)

DEFAULT_TABLE = "safedb"
DEFAULT_REGION = "us-east-1"
CONFIG_ENV = "CLOUDCHAIN_CONFIG"
RETRY_MODES = ("standard", "adaptive", "legacy")
DEFAULT_CONFIG_PATH = "~/.cchainrc"

# A synthetic section that collects options written above any header: the original
# `.cchainrc` may have no section header at all, which plain ConfigParser rejects.
TOP = "__top__"


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError(f"{raw!r} is not a whole number of at least 1")
    return value


def _retry_mode(raw: str) -> str:
    if raw not in RETRY_MODES:
        raise ValueError(f"{raw!r} is not one of {', '.join(RETRY_MODES)}")
    return raw


def _seconds(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError(f"{raw!r} is not a number of seconds, 0 or more")
    return value


def _rotate_every(raw: str) -> int | None:
    from .schedule import parse_rotate_every

    try:
        return parse_rotate_every(raw, "rotate_every")
    except ValidationError as err:
        raise ValueError(str(err).removeprefix("rotate_every: ")) from None


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}  # fmt: skip


def _boolean(raw: str) -> bool:
    value = _BOOLEANS.get(raw.lower())
    if value is None:
        raise ValueError(f"{raw!r} is not one of true, false, yes, no, on, off, 1, 0")
    return value


def _regions(raw: str) -> tuple[str, ...]:
    return tuple(check_region(r) for r in re.split(r"[,\s]+", raw) if r)


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError(f"{raw!r} is not a positive number")
    return value


@dataclass(frozen=True)
class Setting:
    """Where one configuration value can come from, and how to parse it from text."""

    env: str
    section: str
    option: str
    parse: Callable[[str], Any] = str
    # Whether a header-less file may set it by its bare option name.
    top_level: bool = True
    # A standard AWS variable honoured after ours, at the same (environment) precedence.
    aws_env: str | None = None
    # Whether it names regions: a bad one is a RegionNameError (exit 2), with a hint.
    regions: bool = False

    def from_environment(self, environ: Mapping[str, str]) -> str | None:
        """Return this setting's value in environ, ours first, or None."""
        value = environ.get(self.env)
        if value is None and self.aws_env:
            value = environ.get(self.aws_env)
        return value


SETTINGS: dict[str, Setting] = {
    "region_name": Setting(
        "CLOUDCHAIN_REGION", "dynamo", "region_name", check_region, regions=True
    ),
    "endpoint_url": Setting("CLOUDCHAIN_ENDPOINT_URL", "dynamo", "endpoint_url", check_endpoint),
    "tablename": Setting("CLOUDCHAIN_TABLE", "dynamo", "tablename"),
    "keyalias": Setting("CLOUDCHAIN_KEY_ALIAS", "IAMKMS", "keyalias"),
    "kms_endpoint_url": Setting(
        "CLOUDCHAIN_KMS_ENDPOINT_URL", "IAMKMS", "endpoint_url", check_endpoint, top_level=False
    ),
    "history_size": Setting("CLOUDCHAIN_HISTORY", "dynamo", "history", _positive_int),
    "connect_timeout": Setting(
        "CLOUDCHAIN_CONNECT_TIMEOUT", "aws", "connect_timeout", _positive_float
    ),
    "read_timeout": Setting("CLOUDCHAIN_READ_TIMEOUT", "aws", "read_timeout", _positive_float),
    "max_attempts": Setting(
        "CLOUDCHAIN_MAX_ATTEMPTS", "aws", "max_attempts", _positive_int, aws_env="AWS_MAX_ATTEMPTS"
    ),
    "retry_mode": Setting(
        "CLOUDCHAIN_RETRY_MODE", "aws", "retry_mode", _retry_mode, aws_env="AWS_RETRY_MODE"
    ),
    "cache_ttl": Setting("CLOUDCHAIN_CACHE_TTL", "cache", "ttl", _seconds, top_level=False),
    "stale_if_error": Setting(
        "CLOUDCHAIN_CACHE_STALE_IF_ERROR", "cache", "stale_if_error", _seconds, top_level=False
    ),
    "max_workers": Setting("CLOUDCHAIN_MAX_WORKERS", "aws", "max_workers", _positive_int),
    "cache_max_entries": Setting(
        "CLOUDCHAIN_CACHE_MAX_ENTRIES", "cache", "max_entries", _positive_int, top_level=False
    ),
    "allow_legacy": Setting("CLOUDCHAIN_ALLOW_LEGACY", "cloudchain", "allow_legacy", _boolean),
    "recovery_days": Setting(
        "CLOUDCHAIN_RECOVERY_DAYS", "cloudchain", "recovery_days", _positive_int
    ),
    "replica_regions": Setting(
        "CLOUDCHAIN_REPLICA_REGIONS", "dynamo", "replica_regions", _regions, regions=True
    ),
    "failover_cooldown": Setting(
        "CLOUDCHAIN_FAILOVER_COOLDOWN", "dynamo", "failover_cooldown", _seconds
    ),
    "rotate_every": Setting("CLOUDCHAIN_ROTATE_EVERY", "cloudchain", "rotate_every", _rotate_every),
}
# Per-region endpoints: `endpoint_url.REGION = URL` in the file ([dynamo] or above any section
# for DynamoDB, [IAMKMS] for KMS), or CLOUDCHAIN_ENDPOINT_URL_<REGION> and
# CLOUDCHAIN_KMS_ENDPOINT_URL_<REGION> (us-west-2 is US_WEST_2) in the environment.
REGION_ENDPOINTS = {
    "region_endpoints": (("dynamo", TOP), "CLOUDCHAIN_ENDPOINT_URL_"),
    "kms_region_endpoints": (("IAMKMS",), "CLOUDCHAIN_KMS_ENDPOINT_URL_"),
}
PER_REGION = "endpoint_url."


@dataclass(frozen=True)
class Config:
    """Resolved settings for one CloudChain; None means the AWS default."""

    region_name: str | None = None
    endpoint_url: str | None = None
    kms_endpoint_url: str | None = None
    tablename: str = DEFAULT_TABLE
    keyalias: str | None = None
    profile_name: str | None = None
    # Versions kept per secret, the current one included.
    history_size: int = 10
    # botocore's defaults (60 s timeouts) can hang a shell for minutes on a bad network.
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_attempts: int = 5
    retry_mode: str = "standard"
    # Threads for whole-service operations (export, import): parallel KMS calls.
    max_workers: int = 16
    # In-process cache of decrypted secrets (seconds); 0 turns it off.
    cache_ttl: float = 0.0
    # How long past its TTL a cached value may still be served while AWS is failing.
    stale_if_error: float = 0.0
    # The most entries (values and misses) the cache holds; the least recently used go first.
    cache_max_entries: int = 1024
    # Whether reference rows (no binding to their row and version) may be read at all.
    allow_legacy: bool = True
    # How long a deleted secret can be restored, in days, before it is gone for good.
    recovery_days: int = 30
    # Where reads go when the home region fails, in order (global table replicas).
    replica_regions: tuple[str, ...] = ()
    # How long a region that failed is skipped, so a dead region costs one timeout.
    failover_cooldown: float = 30.0
    # Endpoints of single regions, by region name (DynamoDB, and KMS when it differs).
    region_endpoints: dict[str, str] = field(default_factory=dict)
    kms_region_endpoints: dict[str, str] = field(default_factory=dict)
    # The rotation period (seconds) a NEW secret gets when its save names none; None: none.
    rotate_every: int | None = None

    def __post_init__(self) -> None:
        """Check every value, however the Config was built; empty strings mean "not set"."""
        checked = {
            "region_name": _checked_region(self.region_name),
            "endpoint_url": _checked_endpoint(self.endpoint_url, "endpoint_url"),
            "kms_endpoint_url": _checked_endpoint(self.kms_endpoint_url, "kms_endpoint_url"),
            "tablename": self.tablename or DEFAULT_TABLE,
            "keyalias": self.keyalias or None,
            "profile_name": self.profile_name or None,
            "connect_timeout": check_seconds(self.connect_timeout, "connect_timeout"),
            "read_timeout": check_seconds(self.read_timeout, "read_timeout"),
            "max_attempts": check_whole(self.max_attempts, "max_attempts"),
            "retry_mode": check_choice(self.retry_mode, "retry_mode", RETRY_MODES),
            "history_size": check_whole(self.history_size, "history_size"),
            "max_workers": check_whole(self.max_workers, "max_workers"),
            "cache_ttl": check_seconds(self.cache_ttl, "cache_ttl", zero_ok=True),
            "stale_if_error": check_seconds(self.stale_if_error, "stale_if_error", zero_ok=True),
            "cache_max_entries": check_whole(self.cache_max_entries, "cache_max_entries"),
            "allow_legacy": bool(self.allow_legacy),
            "recovery_days": check_whole(self.recovery_days, "recovery_days"),
            "replica_regions": _checked_regions(self.replica_regions),
            "failover_cooldown": check_seconds(
                self.failover_cooldown, "failover_cooldown", zero_ok=True
            ),
            "region_endpoints": _checked_endpoints(self.region_endpoints),
            "kms_region_endpoints": _checked_endpoints(self.kms_region_endpoints),
            "rotate_every": _checked_rotate_every(self.rotate_every),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: set once, here


def _checked_rotate_every(value: float | None) -> int | None:
    if value is None:
        return None
    from .schedule import check_rotate_every

    return check_rotate_every(value)


def _refused(what: str, err: ValueError) -> RegionNameError:
    return RegionNameError(f"{what}: {err}", hint=region_hint(err))


def _checked_region(region: object) -> str | None:
    if not region:
        return None
    try:
        return check_region(region)
    except ValueError as err:
        raise _refused("region_name", err) from None


def _checked_regions(regions: object) -> tuple[str, ...]:
    if isinstance(regions, str):
        regions = (regions,)
    checked = []
    for region in regions:  # type: ignore[attr-defined]
        try:
            checked.append(check_region(region))
        except ValueError as err:
            raise _refused("replica_regions", err) from None
    return tuple(dict.fromkeys(checked))  # in order, once each


def _checked_endpoint(url: object, name: str) -> str | None:
    if not url:
        return None
    try:
        return check_endpoint(url)
    except EndpointValueError as err:
        raise CloudChainConfigError(f"invalid {name}: {err}") from None


def _checked_endpoints(endpoints: object) -> dict[str, str]:
    found = dict(endpoints or {})  # type: ignore[call-overload]
    for region in found:
        try:
            check_region(region)
        except ValueError as err:
            raise _refused("a per-region endpoint", err) from None
        _checked_endpoint(found[region], f"endpoint_url.{region}")
    return {region: str(url) for region, url in found.items() if url}


def is_aws_endpoint(url: str) -> bool:
    """Return True when the URL points at an AWS-operated host."""
    host = (urlparse(url).hostname or "").lower()
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


def kms_endpoint_for(endpoint_url: str | None, kms_endpoint_url: str | None) -> str | None:
    """Pick the KMS endpoint: its own setting, else a non-AWS DynamoDB endpoint, else AWS's."""
    if kms_endpoint_url:
        return kms_endpoint_url
    if endpoint_url and not is_aws_endpoint(endpoint_url):
        # A local emulator (cchain-local, moto, LocalStack) serves KMS on the same endpoint.
        return endpoint_url
    return None
