"""The token that guards the agent over TCP: one rule, whatever its source.

- given (--token-file, CLOUDCHAIN_AGENT_TOKEN): at least MIN_GIVEN printable ASCII characters
  with no white space (surrounding white space, such as a file's final newline, is dropped);
  an empty or blank value is refused, never taken as "no token";
- generated: TOKEN_BYTES random bytes, as hex, in a new 0600 file in the agent's private
  directory, one per port (agent-PORT.token, so two agents never overwrite each other's),
  written under a fresh name and renamed into place (nothing planted at the path is ever
  written through), and removed when the agent stops;
- a token file that group or others may read, or that another user owns, is refused unless
  --allow-loose-token-file (then a warning): whoever can read it can read every secret.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from ..errors import CloudChainConfigError
from .listen import private_dir, runtime_dir

TOKEN_NAME = "agent-{port}.token"
TOKEN_ENV = "CLOUDCHAIN_AGENT_TOKEN"
MIN_GIVEN = 16
TOKEN_BYTES = 32
MAX_TOKEN_FILE = 4096
log = logging.getLogger("cloudchain.agent")


def check_token(value: str, source: str) -> str:
    """Return the token as used, or refuse it naming its source (never its value)."""
    token = value.strip()
    if not token:
        raise CloudChainConfigError(f"the agent token from {source} is empty",
                                    hint="leave it unset and the agent makes one")  # fmt: skip
    if not all("!" <= char <= "~" for char in token):
        raise CloudChainConfigError(
            f"the agent token from {source} must be printable ASCII with no white space"
        )
    if len(token) < MIN_GIVEN:
        raise CloudChainConfigError(
            f"the agent token from {source} is shorter than {MIN_GIVEN} characters",
            hint="make one with: python3 -c 'import secrets; print(secrets.token_hex(32))'",
        )
    return token


def _read_token_file(path: Path, allow_loose: bool) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as err:
        raise CloudChainConfigError(f"cannot read --token-file {path}: {err.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CloudChainConfigError(f"--token-file {path} is not a regular file")
        loose = []
        if stat.S_IMODE(info.st_mode) & 0o077:
            loose.append(f"readable by group or others (mode {stat.S_IMODE(info.st_mode):04o})")
        if info.st_uid not in (os.getuid(), 0):
            loose.append(f"owned by uid {info.st_uid}")
        if loose:
            why = f"--token-file {path} is {' and '.join(loose)}"
            if not allow_loose:
                raise CloudChainConfigError(
                    why, hint=f"chmod 600 {path} (or pass --allow-loose-token-file)"
                )
            log.warning("%s: anyone who can read it can read every secret", why)
        data = handle.read(MAX_TOKEN_FILE + 1)
    if len(data) > MAX_TOKEN_FILE:
        raise CloudChainConfigError(f"--token-file {path} is larger than a token")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise CloudChainConfigError(f"the agent token from {path} is not ASCII") from None


def _write_new_token(path: Path) -> str:
    private_dir(path.parent)
    token = os.urandom(TOKEN_BYTES).hex()
    fresh = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(token + "\n")
        os.replace(fresh, path)
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise
    return token


def load_token(
    token_file: str | None,
    environ: dict[str, str] | os._Environ[str],
    port: int,
    allow_loose: bool = False,
) -> tuple[str, Path | None, bool]:
    """The TCP token, from --token-file, CLOUDCHAIN_AGENT_TOKEN, or else a new one written
    to a new 0600 file; return it, the file it is in (absolute), and whether it is new."""
    if token_file is not None:
        path = Path(os.path.abspath(token_file))
        token = check_token(_read_token_file(path, allow_loose), f"--token-file {path}")
        return token, path, False
    if TOKEN_ENV in environ:
        return check_token(environ[TOKEN_ENV], TOKEN_ENV), None, False
    path = Path(os.path.abspath(runtime_dir(environ) / TOKEN_NAME.format(port=port)))
    return _write_new_token(path), path, True
