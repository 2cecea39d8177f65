"""Writing a rendered template: atomically, with its mode, only when its bytes differ, and
never through a symbolic link.

The directory is opened once (not following a link) and every step is relative to it: the
current file is read without following a link, the new bytes go to a fresh temporary file
beside it (O_EXCL, mode set before a byte is written), are fsynced, and renamed over the
destination; rename replaces a name and never writes through it. Whoever reads the
destination sees the old file or the new one, never part of one, whenever the agent stops.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import secrets
import stat
from pathlib import Path

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Passing through a directory needs only its search (x) bit, as a path lookup does.
_PASS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Written(enum.Enum):
    """What writing a rendering did."""

    UNCHANGED = "unchanged"  # the same bytes and mode were there: nothing done
    MODE = "mode"  # the same bytes; only the mode was set
    REPLACED = "replaced"  # new bytes: the command runs


class NotAFile(OSError):
    """The destination, or a directory on the way to it, is a symbolic link, or the
    destination is not a regular file: it is left alone."""


def write_if_changed(
    destination: Path, data: bytes, mode: int, real_directory: str | None = None
) -> Written:
    """Put data at destination with mode, unless it is there already; raise OSError.
    real_directory: the destination's directory with its links resolved at start, reached
    now without following any link (one swapped in on the way is refused)."""
    if real_directory is None:
        directory = os.open(destination.parent, _DIRECTORY)
    else:
        directory = _walk(real_directory)
    try:
        name = destination.name
        same = _same_bytes(directory, name, data, mode)
        if same is not None:
            return same
        temporary = f".{name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(temporary, _CREATE, mode, dir_fd=directory)
        try:
            try:
                os.fchmod(fd, mode)  # exactly mode, whatever the umask
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:  # a full disk, or the agent stopping: no temporary left behind
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=directory)
            raise
        os.fsync(directory)  # the rename itself survives a crash
        return Written.REPLACED
    finally:
        os.close(directory)


def _walk(real_directory: str) -> int:
    """An fd of real_directory, reached from / one directory at a time, following no link."""
    parts = [part for part in real_directory.split("/") if part]
    directory = os.open("/", _PASS if parts else _DIRECTORY)
    try:
        for index, part in enumerate(parts, 1):
            flags = _DIRECTORY if index == len(parts) else _PASS  # the last one is fsynced
            try:
                inner = os.open(part, flags, dir_fd=directory)
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                raise NotAFile(err.errno, f"{part} on the way to it is no longer a directory "
                               "(a symbolic link now?); it is left alone") from None  # fmt: skip
            os.close(directory)
            directory = inner
    except BaseException:
        os.close(directory)
        raise
    return directory


def _same_bytes(directory: int, name: str, data: bytes, mode: int) -> Written | None:
    """UNCHANGED or MODE when the file there holds data already; None when it must be written."""
    try:
        fd = os.open(name, _READ, dir_fd=directory)
    except FileNotFoundError:
        return None
    except OSError as err:
        if _is_link(directory, name):
            raise NotAFile(
                err.errno, "the destination is a symbolic link; it is left alone"
            ) from None
        raise
    try:
        held = os.fstat(fd)
        if not stat.S_ISREG(held.st_mode):
            raise NotAFile(0, "the destination is not a regular file; it is left alone")
        if held.st_size != len(data) or _read_all(fd, held.st_size) != data:
            return None
        if stat.S_IMODE(held.st_mode) == mode:
            return Written.UNCHANGED
        os.fchmod(fd, mode)
        return Written.MODE
    finally:
        os.close(fd)


def _is_link(directory: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=directory).st_mode)
    except OSError:
        return False


def _read_all(fd: int, size: int) -> bytes:
    chunks, left = [], size + 1  # one byte more: a file that grew is not the same
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
