"""Input and output for cchain: stdout, messages on stderr, bounded stdin, and files.

Files that receive secrets are written so that nothing else can read them on the way:
a regular file is replaced atomically by a 0600 file that was flushed to disk first; anything
else a user can name (a FIFO, a device, /dev/stdout, a process substitution) is written
through in place, never replaced by a regular file.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from ..errors import CloudChainError, ValidationError
from .spec import PROG

# The most bytes cchain reads from a file or stdin that holds many secrets (--import).
MAX_INPUT_BYTES = 16 * 1024 * 1024


def info(message: str) -> None:
    """Print a confirmation for the user to stderr."""
    print(f"{PROG}: {message}", file=sys.stderr)


def warn(message: str) -> None:
    """Print a warning to stderr."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def write_stdout(data: str | bytes) -> None:
    """Write text as UTF-8, or bytes as they are, to stdout, whatever the locale's encoding."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data.encode("utf-8") if isinstance(data, str) else data)
    sys.stdout.buffer.flush()


def read_stdin(what: str, limit: int, slack: int = 0) -> bytes:
    """Return stdin's bytes, reading at most limit + slack + 1 of them: more is a one-line
    error. slack leaves room for what the caller strips (a trailing line ending)."""
    if sys.stdin is None:
        raise ValidationError(f"no standard input to read {what} from")
    data = sys.stdin.buffer.read(limit + slack + 1)
    if len(data) > limit + slack:
        raise ValidationError(f"{what} on standard input is over the limit: the limit is {limit}")
    return data


def read_file(path: str, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """Return a file's bytes ('-': stdin), refusing one larger than limit."""
    if path == "-":
        return read_stdin(what, limit)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise ValidationError(f"cannot read {what} {path}: {err.strerror}") from None
    if len(data) > limit:
        raise ValidationError(f"{what} {path} is over the limit: the limit is {limit} bytes")
    return data


def utf8_text(data: bytes, what: str) -> str:
    """Decode UTF-8, dropping a leading byte-order mark; anything else is a one-line error."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValidationError(f"{what} is not UTF-8 text (byte {err.start})") from None


def write_output(output: str | None, text: str, written: str) -> None:
    """Write a whole rendering to stdout, or with -o to a private file, then saying `written`."""
    if output:
        write_private_file(output, text)
        info(written)
    else:
        write_stdout(text)


def write_private_file(path: str, data: str | bytes) -> None:
    """Write data to path so that only its owner can read it (see the module docstring)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        target = Path(path)
        try:
            mode = os.stat(target).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            raise CloudChainError(f"cannot write {path}: it is a directory")
        if mode is not None and not stat.S_ISREG(mode):
            _write_in_place(target, payload)
            return
        if mode is not None and _names_an_open_file(target):
            _write_in_place(target, payload)  # /dev/stdout, /dev/fd/N: the caller's open file
            return
        # A symbolic link to a regular file: replace the file it names, keep the link.
        _replace_atomically(Path(os.path.realpath(target)), payload)
    except OSError as err:
        raise CloudChainError(f"cannot write {path}: {err.strerror or err}") from None


def _names_an_open_file(path: Path) -> bool:
    """Whether path is, or links through, /dev or /proc (as /dev/stdout -> /proc/self/fd/1)."""
    current = os.path.abspath(path)
    for _ in range(40):
        if current.startswith(("/dev/", "/proc/")):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.join(os.path.dirname(current), os.readlink(current))
    return False


def _write_in_place(target: Path, payload: bytes) -> None:
    with open(target, "wb") as handle:
        handle.write(payload)


def _replace_atomically(target: Path, payload: bytes) -> None:
    import tempfile

    folder = target.parent
    if not folder.is_dir():
        raise CloudChainError(f"cannot write {target}: the directory {folder} does not exist")
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a crash once the directory is on disk too
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
