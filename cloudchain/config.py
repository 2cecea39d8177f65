"""Configuration: the settings, where each comes from, and the one precedence rule.

Precedence, highest first: explicit value (a CLI flag or a module variable) > environment >
config file > default. A setting given as an empty string means "use the default" and stops
the lookup there, so `endpoint_url =` in a file, or `--endpoint-url ''`, selects AWS's endpoint.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from .errors import CloudChainConfigError, ValidationError
from .validation import check_choice, check_seconds, check_whole

DEFAULT_TABLE = "safedb"
DEFAULT_REGION = "us-east-1"
CONFIG_ENV = "CLOUDCHAIN_CONFIG"
RETRY_MODES = ("standard", "adaptive", "legacy")
DEFAULT_CONFIG_PATH = "~/.cchainrc"

# A synthetic section that collects options written above any header: the original
# `.cchainrc` may have no section header at all, which plain ConfigParser rejects.
_TOP = "__top__"


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


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}  # fmt: skip


def _boolean(raw: str) -> bool:
    value = _BOOLEANS.get(raw.lower())
    if value is None:
        raise ValueError(f"{raw!r} is not one of true, false, yes, no, on, off, 1, 0")
    return value


_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


def check_region(region: str) -> str:
    """Return an AWS region name after checking its shape (us-east-1, ap-southeast-2...)."""
    if not _REGION.fullmatch(region):
        raise ValueError(f"{region!r} is not an AWS region name")
    return region


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

    def from_environment(self, environ: Mapping[str, str]) -> str | None:
        """Return this setting's value in environ, ours first, or None."""
        value = environ.get(self.env)
        if value is None and self.aws_env:
            value = environ.get(self.aws_env)
        return value


SETTINGS: dict[str, Setting] = {
    "region_name": Setting("CLOUDCHAIN_REGION", "dynamo", "region_name"),
    "endpoint_url": Setting("CLOUDCHAIN_ENDPOINT_URL", "dynamo", "endpoint_url"),
    "tablename": Setting("CLOUDCHAIN_TABLE", "dynamo", "tablename"),
    "keyalias": Setting("CLOUDCHAIN_KEY_ALIAS", "IAMKMS", "keyalias"),
    "kms_endpoint_url": Setting(
        "CLOUDCHAIN_KMS_ENDPOINT_URL", "IAMKMS", "endpoint_url", top_level=False
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
    "replica_regions": Setting("CLOUDCHAIN_REPLICA_REGIONS", "dynamo", "replica_regions", _regions),
    "failover_cooldown": Setting(
        "CLOUDCHAIN_FAILOVER_COOLDOWN", "dynamo", "failover_cooldown", _seconds
    ),
}
# Per-region endpoints: `endpoint_url.REGION = URL` in the file ([dynamo] or above any section
# for DynamoDB, [IAMKMS] for KMS), or CLOUDCHAIN_ENDPOINT_URL_<REGION> and
# CLOUDCHAIN_KMS_ENDPOINT_URL_<REGION> (us-west-2 is US_WEST_2) in the environment.
REGION_ENDPOINTS = {
    "region_endpoints": (("dynamo", _TOP), "CLOUDCHAIN_ENDPOINT_URL_"),
    "kms_region_endpoints": (("IAMKMS",), "CLOUDCHAIN_KMS_ENDPOINT_URL_"),
}
_PER_REGION = "endpoint_url."


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

    def __post_init__(self) -> None:
        """Check every value, however the Config was built; empty strings mean "not set"."""
        checked = {
            "region_name": self.region_name or None,
            "endpoint_url": self.endpoint_url or None,
            "kms_endpoint_url": self.kms_endpoint_url or None,
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
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: set once, here


def _checked_regions(regions: object) -> tuple[str, ...]:
    if isinstance(regions, str):
        regions = (regions,)
    try:
        checked = tuple(check_region(r) for r in regions)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as err:
        raise ValidationError(f"replica_regions: {err}") from None
    return tuple(dict.fromkeys(checked))  # in order, once each


def _checked_endpoints(endpoints: object) -> dict[str, str]:
    found = dict(endpoints or {})  # type: ignore[call-overload]
    try:
        return {check_region(region): str(url) for region, url in found.items() if url}
    except ValueError as err:
        raise ValidationError(f"a per-region endpoint: {err}") from None


_DEFAULTS = Config()


def config_path(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> tuple[Path, bool]:
    """Return the config file to read and whether it was named explicitly (and so must exist)."""
    if path:
        return Path(path).expanduser(), True
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).expanduser(), True
    return Path(DEFAULT_CONFIG_PATH).expanduser(), False


def _parse(path: Path, text: str) -> configparser.ConfigParser:
    """Parse a .cchainrc (sectioned or not); an error names the file and the line."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(f"[{_TOP}]\n{text}", source=str(path))
    except configparser.Error as err:
        # Line numbers count the synthetic header line; the file's own start one later. The
        # offending line is not quoted: a misplaced credential must not reach a terminal.
        if isinstance(err, configparser.ParsingError) and err.errors:
            reason = f"line {err.errors[0][0] - 1} is not `key = value` or a [section]"
        elif isinstance(err, configparser.DuplicateOptionError):
            where = "above any [section]" if err.section == _TOP else f"in [{err.section}]"
            reason = f"line {(err.lineno or 1) - 1} sets {err.option!r} a second time {where}"
        elif isinstance(err, configparser.DuplicateSectionError):
            reason = f"line {(err.lineno or 1) - 1} opens [{err.section}] a second time"
        else:
            reason = str(err).splitlines()[0]
        raise CloudChainConfigError(
            f"cannot parse config file {path}: {reason}",
            hint="fix that line; `cchain --doctor` shows the settings in force",
        ) from None
    return parser


def read_config_file(path: Path, *, required: bool) -> dict[str, Any]:
    """Return the settings a `.cchainrc` file sets, sectioned or header-less."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise CloudChainConfigError(f"config file {path} does not exist") from None
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise CloudChainConfigError(f"cannot read config file {path}: {err}") from None
    return _settings_in(_parse(path, text))


def _settings_in(parser: configparser.ConfigParser) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, setting in SETTINGS.items():
        if parser.has_option(setting.section, setting.option):
            found[name] = parser.get(setting.section, setting.option)
        elif setting.top_level and parser.has_option(_TOP, setting.option):
            found[name] = parser.get(_TOP, setting.option)
    for name, (sections, _) in REGION_ENDPOINTS.items():
        found[name] = {
            option[len(_PER_REGION) :]: parser.get(section, option)
            for section in reversed(sections)  # [dynamo] wins over the top of the file
            if parser.has_section(section)
            for option in parser.options(section)
            if option.startswith(_PER_REGION)
        }
    return found


def region_endpoints_in(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The per-region endpoints the environment sets."""
    return {
        name: {
            variable[len(prefix) :].lower().replace("_", "-"): value
            for variable, value in environ.items()
            if variable.startswith(prefix) and value
        }
        for name, (_, prefix) in REGION_ENDPOINTS.items()
    }


def unknown_keys(path: Path) -> list[str]:
    """Return the keys a config file sets that cloudchain does not read ([section] key)."""
    parser = _parse(path, path.read_text(encoding="utf-8"))
    known = {(s.section, s.option) for s in SETTINGS.values()}
    known |= {(_TOP, s.option) for s in SETTINGS.values() if s.top_level}
    per_region = {section for sections, _ in REGION_ENDPOINTS.values() for section in sections}
    return [
        option if section == _TOP else f"[{section}] {option}"
        for section in parser.sections()
        for option in parser.options(section)
        if (section, option) not in known
        and not (section in per_region and option.startswith(_PER_REGION))
    ]


def resolve_sources(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, tuple[Any, str]]:
    """Apply the precedence: for each setting, the first layer that has it wins. Return
    {setting: (value, the layer it came from)}, for the settings any layer sets."""
    resolved: dict[str, tuple[Any, str]] = {}
    for name, setting in SETTINGS.items():
        for source, values in layers:
            raw = values.get(name)
            if raw is None:
                continue
            if isinstance(raw, str):
                raw = raw.strip()
                if raw == "":
                    break  # explicitly "the default"
                try:
                    raw = setting.parse(raw)
                except ValueError as err:
                    raise CloudChainConfigError(f"invalid {name} from {source}: {err}") from None
            resolved[name] = (raw, source)
            break
    return resolved


def resolve(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Apply the precedence (see resolve_sources) and return {setting: value}."""
    return {name: value for name, (value, _) in resolve_sources(layers).items()}


def load_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build a Config from explicit values, the environment and the config file."""
    return explain_config(overrides, path=path, environ=environ)[0]


def explain_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Config, dict[str, str]]:
    """Build a Config as load_config does, and say where each setting came from: "flag",
    "environment", the config file's path, or "default"."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    unknown = set(overrides) - {f.name for f in fields(Config)}
    if unknown:
        raise TypeError(f"unknown configuration settings: {', '.join(sorted(unknown))}")
    file_path, required = config_path(path, environ)
    from_env = {name: s.from_environment(environ) for name, s in SETTINGS.items()}
    from_file = read_config_file(file_path, required=required)
    layers = [("flag", overrides), ("environment", from_env), (str(file_path), from_file)]
    found = resolve_sources(layers)
    from_env_regions = region_endpoints_in(environ)
    for name in REGION_ENDPOINTS:  # per region: a flag's beats the environment's, the file's
        merged: dict[str, str] = {}
        for source, endpoints in (
            (str(file_path), from_file.get(name, {})),
            ("environment", from_env_regions[name]),
            ("flag", overrides.get(name) or {}),
        ):
            for region in endpoints:
                try:
                    check_region(region)
                except ValueError as err:
                    raise CloudChainConfigError(f"invalid {name} from {source}: {err}") from None
            merged.update(endpoints)
        if merged:
            found[name] = (merged, "merged")
    extra = {
        name: value
        for name, value in overrides.items()
        if name not in SETTINGS and name not in REGION_ENDPOINTS and value is not None
    }
    values = {name: value for name, (value, _) in found.items()}
    config = Config(**{**_defaults_dict(), **values, **extra})
    sources = {f.name: "default" for f in fields(Config)}
    sources.update({name: source for name, (_, source) in found.items()})
    sources.update({name: "flag" for name in extra})
    return config, sources


def _defaults_dict() -> dict[str, Any]:
    return {f.name: getattr(_DEFAULTS, f.name) for f in fields(Config)}


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
