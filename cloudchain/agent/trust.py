"""Whether the way to the agent's socket can be trusted: checked by the client before it
connects (and by its peer credentials after), and by the agent before it binds.

Trusted owners are the caller's own uid, root, and, for the client, the uid in
CLOUDCHAIN_AGENT_UID (an agent run as another user, such as a sidecar). As OpenSSH's
StrictModes does:
- every symbolic link on the way is owned by a trusted uid;
- every directory above the socket's own is owned by a trusted uid and not writable by group
  or others, unless it has the sticky bit (as /tmp does), which keeps others from renaming
  what is ours;
- the socket's directory is owned by a trusted uid and writable by nobody else, and the
  socket is a socket owned by a trusted uid.
After connecting, the peer's credentials (SO_PEERCRED, Linux) must name a trusted uid: the
check that holds even if a path was swapped between the look and the connect.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import Mapping

AGENT_UID_ENV = "CLOUDCHAIN_AGENT_UID"


class Untrusted(Exception):
    """The socket, a directory or link on its way, or its peer are not the agent's."""


def trusted_uids(environ: Mapping[str, str]) -> frozenset[int]:
    """The uids an agent may run as: ours, root's, and CLOUDCHAIN_AGENT_UID's."""
    uids = {os.getuid(), 0}
    named = environ.get(AGENT_UID_ENV, "").strip()
    if named:
        if not (named.isascii() and named.isdigit()):
            raise Untrusted(f"{AGENT_UID_ENV} must be a numeric uid")
        uids.add(int(named))
    return frozenset(uids)


def _owner(path: str, info: os.stat_result, trusted: frozenset[int], what: str) -> None:
    if info.st_uid not in trusted:
        raise Untrusted(f"{what} {path} belongs to uid {info.st_uid}, not to you or the agent's "
                        f"user (set {AGENT_UID_ENV} if the agent runs as that uid)")  # fmt: skip


def check_links(path: str, trusted: frozenset[int]) -> None:
    """Refuse a symbolic link owned by an untrusted uid on the way to path (as far as the
    path exists)."""
    walked = "/"
    for name in os.path.abspath(path).split("/")[1:]:
        walked = os.path.join(walked, name)
        try:
            info = os.lstat(walked)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(info.st_mode):
            _owner(walked, info, trusted, "the link")


def check_ancestors(folder: str, trusted: frozenset[int]) -> None:
    """Refuse a real directory above folder that an untrusted uid owns, or that group or
    others may write to without the sticky bit."""
    while folder != "/":
        folder = os.path.dirname(folder)
        info = os.lstat(folder)
        _owner(folder, info, trusted, "the directory")
        if stat.S_IMODE(info.st_mode) & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise Untrusted(f"the directory {folder} is writable by group or others")


def check_socket_path(path: str, trusted: frozenset[int]) -> None:
    """Refuse a socket path that someone untrusted could have put there or could replace."""
    check_links(path, trusted)
    real = os.path.realpath(path)
    folder = os.path.dirname(real)
    info = os.lstat(real)
    if not stat.S_ISSOCK(info.st_mode):
        raise Untrusted(f"{real} is not a socket")
    _owner(real, info, trusted, "the socket")
    info = os.lstat(folder)
    _owner(folder, info, trusted, "the directory")
    if stat.S_IMODE(info.st_mode) & 0o022:
        raise Untrusted(f"the directory {folder} is writable by group or others")
    check_ancestors(folder, trusted)


def check_peer(sock: socket.socket, trusted: frozenset[int]) -> None:
    """Refuse a connected unix socket whose server runs as an untrusted uid."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:  # not Linux: the path checks above are what there is
        return
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    if uid not in trusted:
        raise Untrusted(f"the process serving the socket runs as uid {uid}, not as you or the "
                        f"agent's user (set {AGENT_UID_ENV} if the agent runs as that uid)")  # fmt: skip


def check_token_file(fd: int, path: str) -> None:
    """Refuse (client side) a token file that is not a regular file of ours or root's that
    only its owner may read: anyone else who can read it can pose as the agent."""
    info = os.fstat(fd)
    if not os.path.isabs(path):
        raise Untrusted(f"the agent token file {path} is not an absolute path")
    if not stat.S_ISREG(info.st_mode):
        raise Untrusted(f"the agent token file {path} is not a regular file")
    _owner(path, info, frozenset({os.getuid(), 0}), "the agent token file")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise Untrusted(f"the agent token file {path} is readable by group or others")
