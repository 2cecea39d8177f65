"""The agent's templates as given, checked at start before any AWS call: `--template SRC:DEST`
flags and `[template NAME]` sections of the config file.

Every refusal is one line naming the template: an unknown key, a bad mode, wait or timeout, a
command that cannot be found, a source that cannot be read or parsed, a destination whose
directory is missing, not a directory, a symbolic link or not writable, a destination that is
a symbolic link or not a regular file, and two templates with one destination.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import _boolean
from ..config_file import config_path, template_sections
from ..durations import parse_duration, parse_window
from ..errors import CloudChainError, ValidationError
from ..validation import shown

KEYS = ("source", "destination", "mode", "command", "command_timeout", "wait", "error_on_missing")
DEFAULT_MODE = 0o600
DEFAULT_COMMAND_TIMEOUT = 30.0
DEFAULT_WAIT = (2.0, 10.0)


@dataclass(frozen=True)
class TemplateSpec:
    """One template: where it comes from and goes, and what runs after it changed."""

    name: str
    source: Path
    destination: Path
    text: str = field(repr=False)
    services: tuple[str, ...]  # what its literal secret()/services() calls read: prefetched
    mode: int = DEFAULT_MODE
    command: tuple[str, ...] = ()
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    wait: tuple[float, float] = DEFAULT_WAIT
    error_on_missing: bool = True
    # The destination's directory with every link resolved at start: each write walks to it
    # following no link, so a directory on the way swapped for one later writes nowhere else
    # (one removed and made again at that path, as a RuntimeDirectory is, is still written).
    directory: str | None = None


def load_templates(
    flags: Sequence[str], config: str | None, environ: Mapping[str, str]
) -> list[TemplateSpec]:
    """Every template the flags and the config file give, checked; raise ValidationError."""
    given: list[tuple[str, dict[str, str], Path]] = []
    for value in flags:
        source, colon, destination = value.partition(":")
        if not (colon and source and destination):
            raise ValidationError(f"--template {value!r} must be SOURCE:DESTINATION")
        given.append((destination, {"source": source, "destination": destination}, Path.cwd()))
    path, named = config_path(config, environ)
    for name, keys, where in template_sections(path, required=named):
        if not name:
            raise ValidationError(f"{where}: [template] needs a name: [template NAME]")
        unknown = sorted(set(keys) - set(KEYS))
        if unknown:
            raise ValidationError(f"{where}: template {name}: unknown key {shown(unknown[0])!r}",
                                  hint="a template takes " + ", ".join(KEYS))  # fmt: skip
        given.append((name, keys, path.parent))
    if len(given) > len(flags):  # its sections name commands the agent runs, and sources
        os.close(_trusted(f"{shown(str(path))}, which holds [template] sections,", path))
    specs: list[TemplateSpec] = []
    for name, keys, base in given:
        spec = _spec(name, keys, base)
        for other in specs:
            if other.name == spec.name:
                raise ValidationError(f"two templates are named {shown(name)!r}")
            if _same_file(other.destination, spec.destination):
                raise ValidationError(f"templates {shown(other.name)!r} and {shown(name)!r} both "
                                      f"write {shown(str(spec.destination))}")  # fmt: skip
        specs.append(spec)
    return specs


def _spec(name: str, keys: Mapping[str, str], base: Path) -> TemplateSpec:
    def fail(message: str) -> ValidationError:
        return ValidationError(f"template {shown(name)}: {message}")

    for key in ("source", "destination"):
        if not keys.get(key, "").strip():
            raise fail(f"{key} is missing")
    source = base / Path(keys["source"].strip()).expanduser()
    destination = Path(os.path.abspath(base / Path(keys["destination"].strip()).expanduser()))
    try:
        mode = int(keys.get("mode", "0600").strip().removeprefix("0o"), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise fail(f"mode {shown(keys['mode'])!r} is not an octal file mode such as 0600")
    if mode & 0o022:  # a rendered file holds secrets: another user must not change what apps read
        raise fail(f"mode {shown(keys['mode'])!r} lets group or others write the file (0600, 0640)")
    try:
        command = tuple(shlex.split(keys.get("command", "")))
        timeout = parse_duration(keys.get("command_timeout", "30s"), "command_timeout")
        wait = parse_window(keys["wait"], "wait") if "wait" in keys else DEFAULT_WAIT
        error_on_missing = _boolean(keys.get("error_on_missing", "on").strip())
    except ValueError as err:  # a DurationError, a bad boolean, an unclosed quote
        raise fail(str(err)) from None
    if command and shutil.which(command[0]) is None:
        raise fail(f"command {shown(command[0])!r} is not found or not executable")
    text = _source_text(name, source)
    directory = check_destination(name, destination)
    from ..render import wanted

    try:
        reads, _ = wanted(text, name)
    except CloudChainError as err:  # a syntax error: already one line naming the template
        raise ValidationError(str(err)) from None
    services = tuple(dict.fromkeys(item.service for item in reads))
    return TemplateSpec(name, source, destination, text, services, mode, command, timeout,
                        wait, error_on_missing, directory)  # fmt: skip


def _source_text(name: str, source: Path) -> str:
    """The source's text, if only the agent's user or root may change it: a template decides
    which secrets the agent (its AWS role, not a client's scope) writes where its reader
    reads them, so one another user could edit would let that user read any of them."""
    try:
        fd = _trusted(f"template {shown(name)}: source {shown(str(source))}", source)
        with open(fd, encoding="utf-8") as handle:  # newlines read as read_text reads them
            return handle.read()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "it is not UTF-8 text"
        raise ValidationError(
            f"template {shown(name)}: cannot read source {shown(str(source))}: {reason}"
        ) from None


def _trusted(where: str, path: Path) -> int:
    """An open fd of path, a regular file only the agent's user or root may change, reached
    through no symbolic link another user owns; else ValidationError naming where."""
    from .trust import Untrusted, check_links

    ours = frozenset({os.getuid(), 0})
    try:
        check_links(str(path), ours)
    except Untrusted:
        raise ValidationError(f"{where} is reached through a symbolic link another user "
                              "owns") from None  # fmt: skip
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO never blocks
    try:
        held = os.fstat(fd)
        if not stat.S_ISREG(held.st_mode):
            raise ValidationError(f"{where} is not a regular file")
        if held.st_uid not in ours:
            raise ValidationError(f"{where} belongs to uid {held.st_uid}, not to the agent's "
                                  "user or root")  # fmt: skip
        if stat.S_IMODE(held.st_mode) & 0o022:
            raise ValidationError(f"{where} is writable by group or others",
                                  hint=f"chmod go-w {path}")  # fmt: skip
    except BaseException:
        os.close(fd)
        raise
    return fd


def _same_file(one: Path, other: Path) -> bool:
    """One name in one directory, however the paths reach it (/var/run is often /run)."""
    if one.name != other.name:
        return False
    there, here = os.stat(one.parent), os.stat(other.parent)
    return (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino)


def check_destination(name: str, destination: Path) -> str:
    """Refuse a destination the agent should not write: its directory missing, not a
    directory, a symbolic link or not writable, or reached through a link another user owns
    (who could point it anywhere); itself a symbolic link or not a file. Return the
    directory with its links resolved, the way every write takes."""
    from .trust import Untrusted, check_links

    where = f"template {shown(name)}: "
    directory = destination.parent
    try:
        check_links(str(directory), frozenset({os.getuid(), 0}))
    except Untrusted:
        raise ValidationError(f"{where}the way to {shown(str(directory))} goes through a "
                              "symbolic link another user owns; name the real "
                              "directory") from None  # fmt: skip
    try:
        held = os.lstat(directory)
    except FileNotFoundError:
        raise ValidationError(f"{where}directory {shown(str(directory))} does not exist") from None
    except OSError as err:
        raise ValidationError(
            f"{where}cannot reach {shown(str(directory))}: {err.strerror}"
        ) from None
    if stat.S_ISLNK(held.st_mode):
        raise ValidationError(f"{where}directory {shown(str(directory))} is a symbolic link; "
                              "name the directory it points to")  # fmt: skip
    if not stat.S_ISDIR(held.st_mode):
        raise ValidationError(f"{where}{shown(str(directory))} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValidationError(f"{where}directory {shown(str(directory))} is not writable")
    found = os.path.realpath(directory)
    try:
        there = os.lstat(destination)
    except FileNotFoundError:
        return found
    if stat.S_ISLNK(there.st_mode):
        raise ValidationError(f"{where}destination {shown(str(destination))} is a symbolic "
                              "link; the agent never writes through one")  # fmt: skip
    if not stat.S_ISREG(there.st_mode):
        raise ValidationError(f"{where}destination {shown(str(destination))} is not a file")
    return found
