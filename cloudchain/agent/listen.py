"""Where the agent listens, and the token that guards it over TCP.

- A unix socket by default: $XDG_RUNTIME_DIR/cloudchain/agent.sock, else
  ~/.cache/cloudchain/agent.sock, mode 0600 in a directory of mode 0700, so file permissions
  decide who may read secrets. A stale socket file (nobody answers) is replaced; a live one is
  another agent, and this one refuses to start.
- Or TCP on a loopback address only, where every request but /healthz must carry the token.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import CloudChainConfigError, ValidationError

SOCKET_NAME = "agent.sock"
TOKEN_NAME = "agent.token"


@dataclass(frozen=True)
class Address:
    """A unix socket path, or a loopback host and port."""

    path: Path | None = None
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def runtime_dir(environ: dict[str, str] | os._Environ[str]) -> Path:
    """The private directory for the socket and token: XDG_RUNTIME_DIR's, else ~/.cache's."""
    base = environ.get("XDG_RUNTIME_DIR")
    root = Path(base) if base else Path(environ.get("HOME", "~")).expanduser() / ".cache"
    return root / "cloudchain"


def parse_listen(value: str | None, environ: dict[str, str] | os._Environ[str]) -> Address:
    """Parse --listen: unix:PATH, or HOST:PORT on a loopback address (anything else refused)."""
    if not value:
        return Address(path=runtime_dir(environ) / SOCKET_NAME)
    if value.startswith("unix:"):
        return Address(path=Path(value[len("unix:") :]).expanduser())
    host, colon, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        number, loopback = -1, False
    if not colon or not loopback or not 0 <= number <= 65535:
        raise ValidationError(
            f"--listen {value!r} is neither unix:PATH nor a loopback address and port such as "
            "127.0.0.1:8080 (the agent serves this machine only)"
        )
    return Address(host=host, port=number)


def private_dir(folder: Path) -> None:
    """Make folder (and its parents) exist; make it 0700 and owned by us, or refuse."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid():
        raise CloudChainConfigError(f"{folder} belongs to another user; the agent will not use it")
    if stat.S_IMODE(info.st_mode) != 0o700:
        folder.chmod(0o700)


def bind_unix(path: Path) -> socket.socket:
    """Bind a listening unix socket at path, mode 0600, replacing a stale one."""
    private_dir(path.parent)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nothing answers: left behind by an agent that died
        else:
            raise CloudChainConfigError(
                f"another agent is already listening on {path}",
                hint="stop it first, or give this one another --listen",
            )
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is created 0600: never readable by others, even briefly
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    path.chmod(0o600)
    return sock


def bind_tcp(address: Address) -> socket.socket:
    """Bind a listening TCP socket on a loopback address."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address.host, address.port))
    return sock


def load_token(
    token_file: str | None, environ: dict[str, str] | os._Environ[str]
) -> tuple[str, Path | None]:
    """The TCP token, from --token-file, CLOUDCHAIN_AGENT_TOKEN, or else 32 new random bytes
    written (as hex) to a new 0600 file; return it and the file it is in, if any."""
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise CloudChainConfigError(
                f"cannot read --token-file {token_file}: {err.strerror}"
            ) from None
        if len(token) < 16:
            raise CloudChainConfigError(f"the token in {token_file} is shorter than 16 characters")
        return token, Path(token_file)
    if environ.get("CLOUDCHAIN_AGENT_TOKEN"):
        return environ["CLOUDCHAIN_AGENT_TOKEN"].strip(), None
    path = runtime_dir(environ) / TOKEN_NAME
    private_dir(path.parent)
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(token + "\n")
    return token, path
