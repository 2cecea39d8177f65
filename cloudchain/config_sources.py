"""Where settings come from, and the one precedence rule that picks between them.

Precedence, highest first: explicit value (a CLI flag or a module variable) > environment >
config file > default. A setting given as an empty string means "use the default" and stops
the lookup there, so `endpoint_url =` in a file, or `--endpoint-url ''`, selects AWS's endpoint.

Every value is checked here, once, and an error names where the value came from: "flag", the
environment variable, or the file and line. Nothing here prints: a key the file sets that no
setting reads is returned as a warning (load_config logs it, --doctor reports it). The file
itself is read by config_file.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from .config import REGION_ENDPOINTS, SETTINGS, Config
from .config_file import config_path, read_config_file
from .errors import CloudChainConfigError, RegionNameError
from .region_names import check_region, region_hint
from .validation import EndpointValueError, check_endpoint

log = logging.getLogger(__name__)
# The AWS chain's own region variable (botocore reads it when no region is configured).
AWS_REGION_ENV = "AWS_DEFAULT_REGION"


MAX_WARNINGS = 10


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


def _refuse(name: str, source: str, err: ValueError) -> CloudChainConfigError:
    message = f"invalid {name} from {source}: {err}"
    if isinstance(err, EndpointValueError):
        return CloudChainConfigError(message)
    if name in REGION_ENDPOINTS or SETTINGS[name].regions:
        return RegionNameError(message, hint=region_hint(err))
    return CloudChainConfigError(message)


def resolve_sources(
    layers: Sequence[tuple[str, Mapping[str, Any]]],
    where: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, tuple[Any, str]]:
    """Apply the precedence: for each setting, the first layer that has it wins. Return
    {setting: (value, the layer it came from)}, for the settings any layer sets. where:
    {layer: {setting: a closer description}} (a variable's name, a file's line), for errors."""
    resolved: dict[str, tuple[Any, str]] = {}
    for name, setting in SETTINGS.items():
        for source, values in layers:
            raw = values.get(name)
            if raw is None:
                continue
            described = (where or {}).get(source, {}).get(name, source)
            try:
                if isinstance(raw, str):
                    raw = raw.strip()
                    if raw == "":
                        break  # explicitly "the default"
                    raw = setting.parse(raw)
                elif setting.regions and not isinstance(raw, str):
                    for region in raw:  # a list of regions, given in Python or as flags
                        check_region(region)
            except ValueError as err:
                raise _refuse(name, described, err) from None
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
    """Build a Config from explicit values, the environment and the config file; log a
    warning for each key in the file that no setting reads."""
    config, _, warnings = explain_config(overrides, path=path, environ=environ)
    for warning in warnings[:MAX_WARNINGS]:
        log.warning("%s", warning)
    if len(warnings) > MAX_WARNINGS:  # a file of junk is one screen of warnings, not a flood
        log.warning("and %d more keys that nothing reads (cchain --doctor lists them)",
                    len(warnings) - MAX_WARNINGS)  # fmt: skip
    return config


def explain_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Config, dict[str, str], tuple[str, ...]]:
    """Build a Config as load_config does, and say where each setting came from ("flag",
    "environment", the config file's path and line, or "default") and what the file sets
    that no setting reads."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    unknown = set(overrides) - {f.name for f in fields(Config)}
    if unknown:
        raise TypeError(f"unknown configuration settings: {', '.join(sorted(unknown))}")
    file_path, required = config_path(path, environ)
    from_env = {name: s.from_environment(environ) for name, s in SETTINGS.items()}
    env_names = {
        name: f"environment variable {s.env if s.env in environ else s.aws_env}"
        for name, s in SETTINGS.items()
    }
    from_file = read_config_file(file_path, required=required)
    layers = [("flag", overrides), ("environment", from_env), (str(file_path), from_file.values)]
    found = resolve_sources(layers, {"environment": env_names, str(file_path): from_file.lines})
    if "region_name" not in found:
        _check_chain_region(environ)
    from_env_regions = region_endpoints_in(environ)
    for name, (_, prefix) in REGION_ENDPOINTS.items():
        # Per region: a flag's beats the environment's, which beats the file's.
        merged: dict[str, str] = {}
        for source, endpoints in (
            (str(file_path), from_file.values.get(name, {})),
            ("environment", from_env_regions[name]),
            ("flag", overrides.get(name) or {}),
        ):
            for region, url in endpoints.items():
                try:
                    check_region(region)
                    check_endpoint(url)
                except ValueError as err:
                    described = {
                        "environment": "environment variable "
                        + prefix
                        + region.upper().replace("-", "_"),
                        str(file_path): from_file.lines.get(f"{name} {region}", source),
                    }.get(source, source)
                    raise _refuse(name, described, err) from None
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
    sources.update({name: from_file.lines.get(name, s) for name, s in sources.items()
                    if s == str(file_path)})  # fmt: skip
    sources.update({name: "flag" for name in extra})
    return config, sources, from_file.warnings


def _check_chain_region(environ: Mapping[str, str]) -> None:
    """With no region configured, botocore takes AWS_DEFAULT_REGION: check it here too."""
    raw = environ.get(AWS_REGION_ENV)
    if raw:
        try:
            check_region(raw)
        except ValueError as err:
            raise RegionNameError(
                f"invalid region from environment variable {AWS_REGION_ENV}: {err}",
                hint=region_hint(err),
            ) from None


def _defaults_dict() -> dict[str, Any]:
    defaults = Config()
    return {f.name: getattr(defaults, f.name) for f in fields(Config)}
