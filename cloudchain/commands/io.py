"""Input and output for cchain: stdout, messages on stderr, bounded stdin, and files.

Files that receive secrets (-o) are written by outfile.py, so that no other user can read or
redirect them on the way.
"""

from __future__ import annotations

import sys

from ..errors import ValidationError
from .outfile import write_private_file
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
