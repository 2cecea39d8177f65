"""Where settings come from, and the one precedence rule that picks between them.

Precedence, highest first: explicit value (a CLI flag or a module variable) > environment >
config file > default. A setting given as an empty string means "use the default" and stops
the lookup there, so `endpoint_url =` in a file, or `--endpoint-url ''`, selects AWS's endpoint.

Every value is checked here, once, and an error names where the value came from: "flag", the
environment variable, or the file and line. Nothing here prints: a key the file sets that no
setting reads is returned as a warning (load_config logs it, --doctor reports it).
"""

from __future__ import annotations

import configparser
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    PER_REGION,
    REGION_ENDPOINTS,
    SETTINGS,
    TOP,
    Config,
    check_region,
    region_hint,
)
from .errors import CloudChainConfigError, RegionNameError
from .validation import shown

log = logging.getLogger(__name__)
# The AWS chain's own region variable (botocore reads it when no region is configured).
AWS_REGION_ENV = "AWS_DEFAULT_REGION"


@dataclass(frozen=True)
class ConfigFile:
    """What one config file sets: raw values by setting, the line each came from, and one
    warning per section or key no setting reads."""

    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, str] = field(default_factory=dict)  # setting -> "PATH line N"
    warnings: tuple[str, ...] = ()


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
        parser.read_string(f"[{TOP}]\n{text}", source=str(path))
    except configparser.Error as err:
        # Line numbers count the synthetic header line; the file's own start one later. The
        # offending line is not quoted: a misplaced credential must not reach a terminal.
        if isinstance(err, configparser.ParsingError) and err.errors:
            reason = f"line {err.errors[0][0] - 1} is not `key = value` or a [section]"
        elif isinstance(err, configparser.DuplicateOptionError):
            where = "above any [section]" if err.section == TOP else f"in [{err.section}]"
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


_SECTION_LINE = re.compile(r"\[(?P<name>.+)\]")
_OPTION_LINE = re.compile(r"(?P<key>[^=:\s][^=:]*?)\s*[=:]")


def _line_numbers(text: str) -> dict[tuple[str, str], int]:
    """Where each section ((name, "")) and key ((section, key)) of a parsed file starts."""
    found: dict[tuple[str, str], int] = {}
    section = TOP
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line[0].isspace() or line.lstrip()[0] in "#;":
            continue  # blank, a continuation, or a comment
        if header := _SECTION_LINE.fullmatch(line.strip()):
            section = header["name"]
            found.setdefault((section, ""), number)
        elif option := _OPTION_LINE.match(line):
            found.setdefault((section, option["key"].strip().lower()), number)  # as optionxform
    return found


def read_config_file(path: Path, *, required: bool) -> ConfigFile:
    """Return what a `.cchainrc` file sets, sectioned or header-less."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise CloudChainConfigError(f"config file {path} does not exist") from None
        return ConfigFile()
    except (OSError, UnicodeDecodeError) as err:
        raise CloudChainConfigError(f"cannot read config file {path}: {err}") from None
    parser = _parse(path, text)
    numbers = _line_numbers(text)
    values: dict[str, Any] = {}
    lines: dict[str, str] = {}
    for name, setting in SETTINGS.items():
        for section in (setting.section, TOP) if setting.top_level else (setting.section,):
            if parser.has_option(section, setting.option):
                values[name] = parser.get(section, setting.option)
                lines[name] = _at(path, numbers.get((section, setting.option)))
                break
    for name, (sections, _) in REGION_ENDPOINTS.items():
        values[name] = {
            option[len(PER_REGION) :]: parser.get(section, option)
            for section in reversed(sections)  # [dynamo] wins over the top of the file
            if parser.has_section(section)
            for option in parser.options(section)
            if option.startswith(PER_REGION)
        }
        for section in reversed(sections):
            for option in parser.options(section) if parser.has_section(section) else ():
                if option.startswith(PER_REGION):
                    lines[f"{name} {option[len(PER_REGION) :]}"] = _at(
                        path, numbers.get((section, option))
                    )
    return ConfigFile(values, lines, tuple(_unknown(path, parser, numbers)))


def _at(path: Path, line: int | None) -> str:
    return f"{path} line {line}" if line else str(path)


def _unknown(
    path: Path, parser: configparser.ConfigParser, numbers: Mapping[tuple[str, str], int]
) -> list[str]:
    """One warning per section, or key in a known section, that no setting reads."""
    readers: dict[str, set[str]] = {}
    for setting in SETTINGS.values():
        readers.setdefault(setting.section, set()).add(setting.option)
        if setting.top_level:
            readers.setdefault(TOP, set()).add(setting.option)
    per_region = {section for sections, _ in REGION_ENDPOINTS.values() for section in sections}
    warnings = []
    for section in parser.sections():
        if section not in readers:
            near = _nearest(section, [s for s in readers if s != TOP])
            warnings.append(
                f"{_at(path, numbers.get((section, '')))}: cloudchain reads no section "
                f"[{shown(section)}]" + (f"; did you mean [{near}]?" if near else "")
            )
            continue
        for option in parser.options(section):
            if option in readers[section]:
                continue
            if section in per_region and option.startswith(PER_REGION):
                continue
            where = "above any [section]" if section == TOP else f"in [{section}]"
            near = _nearest(option, sorted(readers[section]))
            elsewhere = sorted(s for s, keys in readers.items() if option in keys and s != TOP)
            advice = (
                f"; did you mean {near}?"
                if near
                else f"; it is read in [{elsewhere[0]}]"
                if elsewhere
                else ""
            )
            warnings.append(
                f"{_at(path, numbers.get((section, option)))}: cloudchain reads no key "
                f"{shown(option)!r} {where}{advice}"
            )
    return warnings


def _nearest(word: str, known: Sequence[str]) -> str | None:
    import difflib  # only for a file with a stray key

    matches = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_keys(path: Path) -> list[str]:
    """Return one warning per section or key a config file sets that cloudchain does not read."""
    return list(read_config_file(path, required=True).warnings)


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
    for warning in warnings:
        log.warning("%s", warning)
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
            for region in endpoints:
                try:
                    check_region(region)
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
