"""How the agent's client reaches the agent, and what it checks before sending a byte: which
address CLOUDCHAIN_AGENT names, whose socket that is, whose token file, and whether a TCP
address is one no one else can answer for. The standard library only, like client.py.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from urllib.parse import urlparse

AGENT_ENV = "CLOUDCHAIN_AGENT"
TOKEN_ENV = "CLOUDCHAIN_AGENT_TOKEN"
TOKEN_FILE_ENV = "CLOUDCHAIN_AGENT_TOKEN_FILE"
CA_ENV = "CLOUDCHAIN_AGENT_CA"
CERT_ENV = "CLOUDCHAIN_AGENT_CERT"
KEY_ENV = "CLOUDCHAIN_AGENT_KEY"


class AgentUnavailable(Exception):
    """The agent could not be reached, cannot serve this request, or could not show it is the
    real agent: go to AWS directly. fix, when known, says what would mend it."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


TOKEN_FIX = (f"use the agent's own token: set {TOKEN_FILE_ENV} to the file it printed at "
             "start (a private file of yours), and make sure nothing else listens on its "
             "address")  # fmt: skip
SOCKET_FIX = (f"point {AGENT_ENV} at your own agent's socket, or set CLOUDCHAIN_AGENT_UID to "
              "the uid the agent runs as")  # fmt: skip


def connect(
    address: str, token: str | None, environ: Mapping[str, str], deadline: float
) -> tuple[socket.socket, str | None, str, bool]:
    """A connected socket, the token to prove ourselves with (TCP), the Host to name, and
    whether the token is sent as it is (TLS); or refuse."""
    if address.startswith("unix:"):
        from .trust import Untrusted, check_peer, check_socket_path, trusted_uids

        path = address[len("unix:") :]
        try:
            trusted = trusted_uids(environ)
            check_socket_path(path, trusted)
        except Untrusted as why:
            raise AgentUnavailable(f"refusing the agent socket: {why}", SOCKET_FIX) from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(path)
            check_peer(sock, trusted)
        except Untrusted as why:
            sock.close()
            raise AgentUnavailable(f"refusing the agent socket: {why}", SOCKET_FIX) from None
        except OSError:
            sock.close()
            raise
        return sock, None, "localhost", False
    url = urlparse(address if "://" in address else f"http://{address}")
    if url.scheme not in ("http", "https") or not url.hostname:
        raise AgentUnavailable(f"{AGENT_ENV}={address!r} is not unix:PATH, "
                               "http://HOST:PORT or https://HOST:PORT")  # fmt: skip
    if url.scheme == "https":  # the certificate proves the agent: the token goes as it is
        from . import tls  # ssl only for https: the unix and loopback paths stay quick

        left = max(deadline - time.monotonic(), 0.001)
        files = (
            environ.get(CA_ENV),
            environ.get(CERT_ENV),
            environ.get(KEY_ENV),
        )
        return (
            tls.connect(url.hostname, url.port or 443, left, *files),
            token,
            url.netloc,
            True,
        )
    if not _loopback(url.hostname):  # a name may resolve to someone else's listener
        raise AgentUnavailable(f"{AGENT_ENV} must name a loopback address such as "
                               "http://127.0.0.1:PORT, not a host name")  # fmt: skip
    if not token:
        raise AgentUnavailable(f"no token for the agent at {address}", TOKEN_FIX)
    left = max(deadline - time.monotonic(), 0.001)
    connected = socket.create_connection((url.hostname, url.port or 80), left)
    return connected, token, url.netloc, False


def read_token_file(path: str) -> str | None:
    """The token in CLOUDCHAIN_AGENT_TOKEN_FILE, if the file is ours (or root's) and private:
    a token someone else could have written, or could read, proves nothing about the agent."""
    from .trust import Untrusted, check_token_file

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as err:
        raise AgentUnavailable(f"cannot read the agent token {path}: {err.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        try:
            check_token_file(fd, path)
        except Untrusted as why:
            raise AgentUnavailable(f"refusing {why}", TOKEN_FIX) from None
        data = handle.read(4097)
    try:
        return data.decode("ascii").strip() or None
    except UnicodeDecodeError:
        raise AgentUnavailable(f"the agent token {path} is not a token") from None


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
