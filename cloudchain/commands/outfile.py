"""-o FILE: write secrets to a file that no other user can read, or redirect, on the way.

On a shared host another user may have planted something at the path, or on the way to it:

- A symbolic link, anywhere in the path, is followed only when the caller or root owns it: a
  link someone else planted in /tmp would send the secrets, or a replacement, where they chose.
  (The kernel's fs.protected_symlinks would say the same for sticky directories, but it is
  often off in containers: this does not rely on it.)
- A regular file, or nothing, is replaced atomically: a 0600 file with an unpredictable name is
  created (O_EXCL, O_NOFOLLOW) in the directory, flushed to disk and renamed over the path.
  A rename replaces the directory entry, never writes into what was there, so a hard link to
  someone's file leaves that file as it was. The directory is opened component by component
  without following links, so a directory swapped for a link after the checks is refused too.
  A directory every user may write to must be sticky (as /tmp is): otherwise anyone could
  rename the file out from under the rename.
- A FIFO or a device is written through in place, and only when the caller or root owns it,
  checked on the descriptor actually opened (fstat), not on the name: a FIFO is opened
  non-blocking first, so nothing is written before the check.
- /dev/stdout, /dev/fd/N and /proc/PID/fd/N name a file the caller already holds open; they
  are written through as they are.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections import deque

from ..errors import CloudChainError

# The kernel's own limit on the links one lookup follows.
MAX_SYMLINKS = 40
# A descriptor of a running process: opening it opens what that process has open.
_OPEN_FILE = re.compile(r"/proc/(?:\d+|self|thread-self)(?:/task/\d+)?/fd/\d+")
_PATH_ONLY = getattr(os, "O_PATH", os.O_RDONLY)


class OutputRefused(CloudChainError):
    """-o names something another user could read or redirect."""


def _trusted(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _resolve(path: str) -> tuple[str, os.stat_result | None, bool]:
    """Follow path's links, each only if trusted; return the path with no link left in it,
    what is there (None: nothing yet), and whether it is a process's open descriptor."""
    full = path if path.startswith("/") else os.path.join(os.getcwd(), path)
    parts = deque(full.split("/"))
    current, found, hops = "/", os.lstat("/"), 0
    while parts:
        name = parts.popleft()
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            found = os.lstat(current)
            continue
        candidate = os.path.join(current, name)
        if _OPEN_FILE.fullmatch(candidate) and not any(p not in ("", ".") for p in parts):
            return candidate, None, True
        try:
            found = os.lstat(candidate)
        except FileNotFoundError:
            if any(p not in ("", ".") for p in parts) or path.endswith("/"):
                raise CloudChainError(
                    f"cannot write {path}: the directory {candidate} does not exist"
                ) from None
            return candidate, None, False
        if stat.S_ISLNK(found.st_mode):
            if not _trusted(found.st_uid):
                raise OutputRefused(
                    f"cannot write {path}: {candidate} is a symbolic link owned by another user "
                    f"(uid {found.st_uid})"
                )
            hops += 1
            if hops > MAX_SYMLINKS:
                raise CloudChainError(f"cannot write {path}: too many symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = "/"
            parts.extendleft(reversed(target.split("/")))
            continue
        current = candidate
    if found is not None and path.endswith("/") and not stat.S_ISDIR(found.st_mode):
        raise CloudChainError(f"cannot write {path}: it is not a directory")
    return current, found, False


def check_output(path: str) -> None:
    """Refuse, before anything is read, an output path that write_private_file would refuse
    as it stands now (the write checks again: the path may change in between)."""
    try:
        resolved, found, open_file = _resolve(path)
        if open_file:
            return
        if found is None or stat.S_ISREG(found.st_mode):
            os.close(_open_directory(path, os.path.dirname(resolved)))
        elif stat.S_ISDIR(found.st_mode):
            raise CloudChainError(f"cannot write {path}: it is a directory")
        else:
            _check_owner(path, found)
    except OSError as err:
        raise CloudChainError(f"cannot write {path}: {err.strerror or err}") from None


def write_private_file(path: str, data: str | bytes) -> None:
    """Write data to path so that only its owner can read it (see the module docstring)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        resolved, found, open_file = _resolve(path)
        if open_file:
            _write_through(path, resolved, payload, open_file=True)
        elif found is None or stat.S_ISREG(found.st_mode):
            _replace_atomically(path, resolved, payload)
        elif stat.S_ISDIR(found.st_mode):
            raise CloudChainError(f"cannot write {path}: it is a directory")
        else:
            _check_owner(path, found)  # refused at once, before an open that may block
            _write_through(path, resolved, payload, open_file=False)
    except OSError as err:
        raise CloudChainError(f"cannot write {path}: {err.strerror or err}") from None


def _check_owner(path: str, found: os.stat_result) -> None:
    if not _trusted(found.st_uid):
        kind = "FIFO" if stat.S_ISFIFO(found.st_mode) else "device or socket"
        raise OutputRefused(
            f"cannot write {path}: it is a {kind} owned by another user (uid {found.st_uid})"
        )


def _write_through(path: str, resolved: str, payload: bytes, *, open_file: bool) -> None:
    """Write into a FIFO, a device or an open descriptor, once fstat says it may be."""
    flags = os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | (0 if open_file else os.O_NOFOLLOW)
    try:
        fd = os.open(resolved, flags | os.O_NONBLOCK)
    except OSError as err:
        if err.errno != errno.ENXIO:
            raise
        fd = os.open(resolved, flags)  # a FIFO with no reader yet: wait for one, then check
    try:
        opened = os.fstat(fd)
        if stat.S_ISREG(opened.st_mode):
            if not open_file:  # the name was swapped for a file after it was checked
                raise OutputRefused(f"cannot write {path}: it changed while it was opened")
            os.ftruncate(fd, 0)
        else:
            _check_owner(path, opened)
        os.set_blocking(fd, True)
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _open_directory(path: str, folder: str) -> int:
    """Open a directory that holds no link (as _resolve returns it) without following one, and
    refuse one that every user may write to unless it is sticky."""
    fd = os.open("/", _PATH_ONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in folder.split("/"):
            if not name:
                continue
            try:
                inner = os.open(
                    name, _PATH_ONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OutputRefused(
                        f"cannot write {path}: {folder} changed while it was opened"
                    ) from None
                raise
            os.close(fd)
            fd = inner
        mode = os.fstat(fd).st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            raise OutputRefused(
                f"cannot write {path}: every user may write to the directory {folder} and it "
                "is not sticky, so another user could replace the file"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _replace_atomically(path: str, target: str, payload: bytes) -> None:
    folder, name = os.path.split(target)
    dir_fd = _open_directory(path, folder or "/")
    try:
        temp = f".{name}.{os.urandom(8).hex()}.tmp"  # unpredictable, and created only if new
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        _sync_directory(dir_fd)
    finally:
        os.close(dir_fd)


def _sync_directory(dir_fd: int) -> None:
    """Put the rename itself on disk, so that it survives a crash too (best effort)."""
    try:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
