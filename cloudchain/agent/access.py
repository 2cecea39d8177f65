"""Who a client of the agent is, and what it may read: the one place that says yes or no.

The access file (--access FILE) is INI, read with the standard library's configparser on every
Python cloudchain supports. Each `[client NAME]` section names one client by exactly one of:

- `token_sha256`: the SHA-256 (hex) of a token sent in X-Cloudchain-Token (TCP, TLS); the file
  never holds the token itself (`cchain-agent --new-token NAME` makes one);
- `uid` or `gid`: a local user or group (number or name), learned on the unix socket from the
  peer's credentials (SO_PEERCRED: its uid and primary gid), never from what it says;
- `subject`: a TLS client certificate's subject, as RFC 4514 writes it (`CN=eso,O=platform`),
  when the agent requires client certificates (--tls-client-ca).

and says what it may read: `services`, exact names or globs (fnmatch, case-sensitive), and
optionally `tags`, K=V pairs a secret must carry. A client with no entry gets nothing.

Every refusal of scope is the same 403 body, decided before anything is looked up, so the
answer says nothing about whether the secret exists. A client with tags needs its secret's
tags, so for it a secret that does not exist and one without the tags are one refusal too.
"""

from __future__ import annotations

import configparser
import grp
import hashlib
import os
import pwd
import socket
import stat
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ..errors import CloudChainConfigError
from .routes import Answer, Params, Problem

SECTION = "client "
IDENTITIES = ("token_sha256", "uid", "gid", "subject")
KEYS = frozenset({*IDENTITIES, "services", "tags", "metrics"})
MAX_ACCESS_FILE = 1024 * 1024
# Paths whose `service` parameters are scoped; a path not named here (a newer route, whose
# query may name services otherwise) answers no client until it is scoped here. /metrics
# answers only the clients granted it (`metrics = yes`): its counts of changes, decrypts, due
# secrets, templates and other clients tell of services outside any one client's scope.
SCOPED = frozenset({"/v1/secret", "/v1/service", "/v1/refresh", "/v1/watch"})
METRICS = "/metrics"


def forbidden() -> Problem:
    """The one refusal of scope: the same body whether or not the secret exists."""
    return Problem(403, "forbidden", "not in this client's scope")


@dataclass(frozen=True)
class Client:
    """One entry of the access file."""

    name: str
    services: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)
    metrics: bool = False  # may read /metrics (a monitoring client)

    def allows(self, service: str) -> bool:
        """Whether service matches one of the client's names or globs."""
        return any(fnmatchcase(service, pattern) for pattern in self.services)


class Access:
    """The clients of an access file, by how each is recognised."""

    def __init__(self) -> None:
        self.tokens: dict[str, Client] = {}
        self.uids: dict[int, Client] = {}
        self.gids: dict[int, Client] = {}
        self.subjects: dict[str, Client] = {}

    @property
    def local(self) -> bool:
        """Whether a uid or gid is named: then the socket must be reachable by others."""
        return bool(self.uids or self.gids)

    def by_token(self, token: str) -> Client | None:
        # The hash is compared, never the token: looking up a hash tells nothing of a token.
        return self.tokens.get(token_hash(token))

    def by_peer(self, uid: int, gid: int) -> Client | None:
        return self.uids.get(uid) or self.gids.get(gid)

    def by_subject(self, subject: str) -> Client | None:
        return self.subjects.get(subject)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_token(name: str) -> tuple[str, str]:
    """A new token for client name, and the access-file lines that admit it."""
    token = os.urandom(32).hex()
    lines = f"[client {name}]\ntoken_sha256 = {token_hash(token)}\nservices = \n"
    return token, lines


def _refuse(path: Path, why: str, hint: str | None = None) -> CloudChainConfigError:
    return CloudChainConfigError(f"--access {path}: {why}", hint=hint)


def _read(path: Path) -> str:
    """The file's text, if only its owner (us or root) may change it: it decides access; so
    does a symbolic link on the way to it, which picks the file (an old copy, say)."""
    from .trust import Untrusted, check_links

    try:
        check_links(str(path), frozenset({os.getuid(), 0}))
    except Untrusted:
        raise _refuse(path, "reached through a symbolic link another user owns") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as err:
        raise _refuse(path, f"cannot read it: {err.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(path, "not a regular file")
        if info.st_uid not in (os.getuid(), 0):
            raise _refuse(path, f"owned by uid {info.st_uid}, not by the agent's user or root")
        if stat.S_IMODE(info.st_mode) & 0o022:
            raise _refuse(path, "writable by group or others", hint=f"chmod go-w {path}")
        data = handle.read(MAX_ACCESS_FILE + 1)
    if len(data) > MAX_ACCESS_FILE:
        raise _refuse(path, "larger than 1 MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(path, "not UTF-8 text") from None


def _local_id(value: str, lookup: Callable[[str], Any], what: str, path: Path) -> int:
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        return int(lookup(value)[2])
    except KeyError:
        raise _refuse(path, f"no such {what}: {value!r}") from None


def _tags(text: str, where: str, path: Path) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise _refuse(path, f"{where}: tag {pair!r} must be KEY=VALUE")
        tags[key.strip()] = value.strip()
    return tags


def load_access(path: Path) -> Access:
    """Read and check an access file; any mistake is one error naming the file and section."""
    # No default section: configparser's [DEFAULT] would lend its keys (services = *) to every
    # client, so a client that forgot its services would read everything; here it is refused.
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=("#", ";"), default_section=""
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(_read(path), source=str(path))
    except configparser.Error as err:
        first = str(err).splitlines()[0]
        raise _refuse(path, f"not an INI file: {first}") from None
    access = Access()
    for section in parser.sections():
        if not section.startswith(SECTION) or not section[len(SECTION) :].strip():
            raise _refuse(path, f"[{section}] is not [client NAME]")
        name = section[len(SECTION) :].strip()
        entry = parser[section]
        unknown = set(entry) - KEYS
        if unknown:
            raise _refuse(path, f"[{section}]: unknown key {sorted(unknown)[0]!r}",
                          hint=f"a client takes {', '.join(sorted(KEYS))}")  # fmt: skip
        given = [key for key in IDENTITIES if key in entry]
        if len(given) != 1:
            raise _refuse(path, f"[{section}] must name the client by exactly one of "
                          f"{', '.join(IDENTITIES)}")  # fmt: skip
        if "services" not in entry:
            raise _refuse(path, f"[{section}] has no services (names or globs, or empty)")
        services = tuple(s for s in (p.strip() for p in entry["services"].split(",")) if s)
        metrics = entry.get("metrics", "no").strip().lower()
        if metrics not in ("yes", "no"):
            raise _refuse(path, f"[{section}]: metrics must be yes or no")
        client = Client(
            name, services, _tags(entry.get("tags", ""), f"[{section}]", path), metrics == "yes"
        )
        kind, value = given[0], entry[given[0]].strip()
        if kind == "token_sha256":
            digest = value.lower()
            if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
                raise _refuse(path, f"[{section}]: token_sha256 must be 64 hex digits",
                              hint="cchain-agent --new-token NAME prints a token and its line")  # fmt: skip
            table: dict[Any, Client] = access.tokens
            key: Any = digest
        elif kind == "uid":
            table, key = access.uids, _local_id(value, pwd.getpwnam, "user", path)
        elif kind == "gid":
            table, key = access.gids, _local_id(value, grp.getgrnam, "group", path)
        else:
            table, key = access.subjects, value
        if key in table:
            raise _refuse(path, f"[{section}] names the same {kind} as [client "
                          f"{table[key].name}]")  # fmt: skip
        table[key] = client
    return access


def peer_client(access: Access, sock: Any, peer_subject: str | None) -> Client | None:
    """The client a connection is, by its unix peer credentials or its certificate subject."""
    if peer_subject is not None:
        return access.by_subject(peer_subject)
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, gid = struct.unpack("3i", raw)
    return access.by_peer(uid, gid)


def guard(client: Client | None, path: str, params: Params) -> Params:
    """Refuse what is out of client's scope, before anything is looked up; return the query to
    answer (a tagged client's /v1/service asks for its tags too)."""
    if client is None:
        raise Problem(403, "forbidden", "no access entry for this client")
    if path == METRICS:
        if not client.metrics:
            raise forbidden()
        return params
    if path not in SCOPED:
        raise forbidden()
    if not all(client.allows(service) for service in params.get("service", [])):
        raise forbidden()
    if not client.tags:
        return params
    if path == "/v1/service":
        asked = dict(tag.partition("=")[::2] for tag in params.get("tag", []))
        if any(key in asked and asked[key] != value for key, value in client.tags.items()):
            raise forbidden()
        tags = params.get("tag", []) + [f"{k}={v}" for k, v in client.tags.items()]
        return {**params, "tag": tags}
    if path != "/v1/secret":  # a refresh's count, a watch's change: both tell of untagged secrets
        raise forbidden()
    return params


def tagged(
    client: Client, service_of: Callable[[str, Mapping[str, str]], Mapping[str, Any]],
    handle: Callable[[Params], Answer],
) -> Callable[[Params], Answer]:  # fmt: skip
    """handle for /v1/secret, for a client with tags: the secret is answered only if its
    service, filtered by the client's tags, holds it; a missing secret is the same refusal."""

    def scoped(params: Params) -> Answer:
        services, users = params.get("service", []), params.get("user", [])
        one = len(services) == 1 and len(users) == 1
        if one and users[0] not in service_of(services[0], client.tags):
            raise forbidden()
        return handle(params)  # a malformed query: the route says what is wrong

    return scoped
