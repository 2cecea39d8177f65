"""Where the agent listens, and the token that guards it over TCP.

- A unix socket by default: $XDG_RUNTIME_DIR/cloudchain/agent.sock, else
  ~/.cache/cloudchain/agent.sock, mode 0600 in a directory of mode 0700, so file permissions
  decide who may read secrets. The directory is made 0700 if missing; an existing one must
  already be ours and 0700, and is never followed through a link or chmodded. Only a socket
  at the path is ever replaced, and only a stale one (nobody answers); a live one is another
  agent, and this one refuses to start.
- Or TCP on a loopback address, where every request but /healthz must carry the token; or,
  with TLS and an access file (access.py), on any address.
- With an access file that names local uids or gids, the directory is 0711 and the socket
  0666, so those users can connect: the access file, by peer credentials, then decides.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import CloudChainConfigError, ValidationError

SOCKET_NAME = "agent.sock"


@dataclass(frozen=True)
class Address:
    """A unix socket path, or a loopback host and port."""

    path: Path | None = None
    host: str = ""
    port: int = 0
    tls: bool = False

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


def runtime_dir(environ: dict[str, str] | os._Environ[str]) -> Path:
    """The private directory for the socket and token: XDG_RUNTIME_DIR's, else ~/.cache's."""
    base = environ.get("XDG_RUNTIME_DIR")
    root = Path(base) if base else Path(environ.get("HOME", "~")).expanduser() / ".cache"
    return root / "cloudchain"


def parse_listen(
    value: str | None, environ: dict[str, str] | os._Environ[str], wide: bool = False
) -> Address:
    """Parse --listen: unix:PATH, or HOST:PORT on a loopback address, or on any address when
    wide (TLS and an access file); anything else refused."""
    if not value:
        return Address(path=runtime_dir(environ) / SOCKET_NAME)
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path:
            raise ValidationError("--listen unix: needs a path, such as unix:/run/app/agent.sock")
        return Address(path=Path(path).expanduser().absolute())
    host, colon, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        number, loopback = -1, None
    if not colon or loopback is None or not 0 <= number <= 65535:
        raise ValidationError(
            f"--listen {value!r} is neither unix:PATH nor an address and port such as "
            "127.0.0.1:8080 (a loopback address, or any with TLS)"
        )
    if not loopback and not wide:
        raise ValidationError(
            f"--listen {value!r} is not a loopback address: beyond loopback the agent needs "
            "--tls-cert, --tls-key and --access (nothing in clear text, nothing to everyone)"
        )
    return Address(host=host, port=number)


def _refuse(folder: Path, why: str) -> CloudChainConfigError:
    return CloudChainConfigError(f"{folder}: {why}; the agent will not use it",
                                 hint="give --listen a directory of the agent's own (made "
                                 "0700 if missing)")  # fmt: skip


def private_dir(folder: Path, mode: int = 0o700) -> None:
    """Make folder exist as a directory of ours, mode 0700 (or mode), or refuse: never follow
    a link another user owns (on the way there too), never chmod or chown what we did not
    just create (systemd's RuntimeDirectory, OpenSSH's StrictModes)."""
    from .trust import Untrusted, check_ancestors, check_links

    ours = frozenset({os.getuid(), 0})
    folder = Path(os.path.abspath(folder))
    try:
        check_links(str(folder), ours)  # before anything is made through a planted link
        missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
        for part in reversed(missing):  # one at a time, each judged before the next
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700)
            check_links(str(part), ours)
        check_ancestors(os.path.realpath(folder), ours)
    except Untrusted as why:
        raise _refuse(folder, str(why)) from None
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(folder, "a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(folder, "not a directory")
    if info.st_uid != os.getuid():
        raise _refuse(folder, f"it belongs to uid {info.st_uid}, not to the agent's")
    if folder in missing:  # ours, just made: the umask may have narrowed it; an fd, so a
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)  # link is refused
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        info = os.lstat(folder)
    if stat.S_IMODE(info.st_mode) != mode:
        raise _refuse(folder, f"mode {stat.S_IMODE(info.st_mode):04o}, not {mode:04o} "
                      "(0700 private; 0711 with an access file naming local users), and the "
                      "agent changes none it did not create")  # fmt: skip


def bind_unix(path: Path, shared: bool = False) -> socket.socket:
    """Bind a listening unix socket at path, mode 0600 (0666 in a 0711 directory when shared:
    an access file then decides), replacing only a stale socket."""
    private_dir(path.parent, 0o711 if shared else 0o700)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None:
        if not stat.S_ISSOCK(info.st_mode):
            raise CloudChainConfigError(f"{path} exists and is not a socket; the agent will "
                                        "not replace it")  # fmt: skip
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
    # The socket is created 0600, never reachable by others even briefly; or, shared, 0666.
    old = os.umask(0o111 if shared else 0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    return sock


def bind_tcp(address: Address) -> socket.socket:
    """Bind a listening TCP socket on a loopback address."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address.host, address.port))
    return sock
