"""The config file (~/.cchainrc, CLOUDCHAIN_CONFIG or --config): which one, what it sets and on
which line, and one warning per section or key no setting reads, with the nearest known one.
Nothing here prints: config_sources.load_config logs the warnings, --doctor reports them."""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import CONFIG_ENV, DEFAULT_CONFIG_PATH, PER_REGION, REGION_ENDPOINTS, SETTINGS, TOP
from .errors import CloudChainConfigError
from .validation import shown

TEMPLATE_SECTION = "template "  # [template NAME]: one of cchain-agent's templates


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
        if section.startswith(TEMPLATE_SECTION):
            continue  # cchain-agent's; it checks their keys itself (agent/template_config.py)
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


def template_sections(path: Path, *, required: bool) -> list[tuple[str, dict[str, str], str]]:
    """Each `[template NAME]` section of a config file: its name, its keys, and where it is."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise CloudChainConfigError(f"config file {path} does not exist") from None
        return []
    except (OSError, UnicodeDecodeError) as err:
        raise CloudChainConfigError(f"cannot read config file {path}: {err}") from None
    parser, numbers = _parse(path, text), _line_numbers(text)
    return [
        (
            section[len(TEMPLATE_SECTION) :].strip(),
            dict(parser.items(section, raw=True)),
            _at(path, numbers.get((section, ""))),
        )
        for section in parser.sections()
        if section.startswith(TEMPLATE_SECTION)
    ]


def _nearest(word: str, known: Sequence[str]) -> str | None:
    import difflib  # only for a file with a stray key

    matches = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_keys(path: Path) -> list[str]:
    """Return one warning per section or key a config file sets that cloudchain does not read."""
    return list(read_config_file(path, required=True).warnings)
