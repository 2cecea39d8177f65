"""Whether a unix socket is the real agent's, decided by the client before it sends anything.

Trusted owners are the client's own uid, root, and the uid in CLOUDCHAIN_AGENT_UID (an agent
run as another user, such as a sidecar). Before connecting, as OpenSSH's StrictModes does:
- every symbolic link on the way to the socket is owned by a trusted uid;
- the socket's real directory is owned by a trusted uid and writable by nobody else;
- each directory above it is owned by a trusted uid and not writable by group or others,
  unless it has the sticky bit (as /tmp does), which keeps others from renaming what is ours;
- the socket is a socket, owned by a trusted uid.
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
    """The socket, its directories or its peer are not the agent's."""


def trusted_uids(environ: Mapping[str, str]) -> frozenset[int]:
    """The uids an agent may run as: ours, root's, and CLOUDCHAIN_AGENT_UID's."""
    uids = {os.getuid(), 0}
    named = environ.get(AGENT_UID_ENV, "").strip()
    if named:
        if not named.isdigit():
            raise Untrusted(f"{AGENT_UID_ENV} must be a numeric uid")
        uids.add(int(named))
    return frozenset(uids)


def _owner(path: str, info: os.stat_result, trusted: frozenset[int], what: str) -> None:
    if info.st_uid not in trusted:
        raise Untrusted(f"{what} {path} belongs to uid {info.st_uid}, not to you or the agent's "
                        f"user (set {AGENT_UID_ENV} if the agent runs as that uid)")  # fmt: skip


def check_socket_path(path: str, trusted: frozenset[int]) -> None:
    """Refuse a socket path that someone untrusted could have put there or could replace."""
    absolute = os.path.abspath(path)
    walked = "/"
    for name in absolute.split("/")[1:]:
        walked = os.path.join(walked, name)
        info = os.lstat(walked)
        if stat.S_ISLNK(info.st_mode):
            _owner(walked, info, trusted, "the link")
    real = os.path.realpath(absolute)
    folder = os.path.dirname(real)
    info = os.lstat(real)
    if not stat.S_ISSOCK(info.st_mode):
        raise Untrusted(f"{real} is not a socket")
    _owner(real, info, trusted, "the socket")
    info = os.lstat(folder)
    _owner(folder, info, trusted, "the directory")
    if stat.S_IMODE(info.st_mode) & 0o022:
        raise Untrusted(f"the directory {folder} is writable by group or others")
    while folder != "/":
        folder = os.path.dirname(folder)
        info = os.lstat(folder)
        _owner(folder, info, trusted, "the directory")
        if stat.S_IMODE(info.st_mode) & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise Untrusted(f"the directory {folder} is writable by group or others")


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
