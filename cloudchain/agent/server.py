"""cchain-agent: serve secrets to this machine over HTTP/1.1, from a cache, reading only.

    GET  /v1/secret?service=S&user=U[&version=N]   the secret; X-Cloudchain-Version: N
    GET  /v1/service?service=S[&format=json|dotenv|env][&prefix=P][&tag=K=V][&allow_env=NAME]
                                                    the whole service, as `cchain --export`
    POST /v1/refresh?service=S[&user=U]             forget what is cached of it
    GET  /v1/watch?service=S[&since=T][&timeout=S]  a long-poll for a change (watching.py)
    GET  /v1/challenge                              a challenge for this connection (proof.py)
    GET  /healthz                                   {"status": "ok"}; no token, no secret
    GET  /metrics                                   Prometheus text format

With an access file (access.py), each request is some client's (its token, its peer's uid or
gid, or its certificate) and answered only within that client's scope; over TLS (tls.py) the
Host must be one the agent's certificate names.

One asyncio event loop serves every connection (kept alive, HTTP/1.1): a secret the cache
holds is answered on the loop itself, and anything that may wait for AWS runs on a pool of
threads, so a miss, a slow AWS or a slow client holds up nobody else. routes.py says what each
path answers, protocol.py reads and writes HTTP; this module decides who is answered (Host,
forwarding, the token or its proof) and logs one line a request: method, path (never the
query), status, duration.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from ..errors import CloudChainError
from . import proof
from .connections import BACKLOG, Connection, Connections
from .listen import Address
from .logs import RequestLog, quiet_exceptions
from .protocol import (
    CLIENT_TIMEOUT,
    MAX_REQUEST_LINE,
    Closed,
    Request,
    host_names,
    problem_answer,
    read_request,
    response,
)
from .routes import Agent, Answer, Problem, Route, json_answer, problem_for
from .watching import WATCH_PATH, Watchers

if TYPE_CHECKING:
    import ssl

    from .access import Access, Client

# Python 3.11+: the TLS handshake runs on an admitted connection, so handshakes that never end
# count toward --max-connections (the idlest closed first) instead of holding file descriptors
# beyond it; on 3.10 asyncio does the handshake before the connection reaches us.
HANDSHAKE_ADMITTED = hasattr(asyncio.StreamWriter, "start_tls")
TOKEN_HEADER = "x-cloudchain-token"
MAX_QUERY_FIELDS = 64
OPEN = frozenset({"/healthz"})  # answered without the token (and /v1/challenge)
log = logging.getLogger("cloudchain.agent")


class Proven:
    """An authenticated request's challenge and nonce: what its answer's proof covers."""

    __slots__ = ("challenge", "nonce")

    def __init__(self, challenge: str, nonce: str) -> None:
        self.challenge, self.nonce = challenge, nonce


class AgentServer:
    """The HTTP side of one agent."""

    def __init__(
        self, agent: Agent, workers: int, address: Address, max_connections: int,
        access: Access | None = None, tls: ssl.SSLContext | None = None,
        names: frozenset[str] = frozenset(),
    ) -> None:  # fmt: skip
        self.agent = agent
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agent")
        path = str(address.path) if address.path is not None else None
        self.hosts = names or host_names(path, address.host, address.port)
        self.connections = Connections(max_connections)
        self.requests = RequestLog()
        self.watchers = Watchers(agent.cached, self.pool)
        self.access, self.tls = access, tls

    def _identify(self, request: Request, path: str, conn: Connection) -> Client | None:
        """With an access file: the client a request is (its token, else its connection's peer),
        or a refusal; None for a path anyone may ask."""
        if proof.AUTH_HEADER.lower() in request.headers:
            raise Problem(403, "forbidden", "with --access, a client sends X-Cloudchain-Token "
                          "(over TLS), not a challenge answer")  # fmt: skip
        if path in OPEN:
            return None
        assert self.access is not None
        given = request.headers.get(TOKEN_HEADER)
        client = conn.client if given is None else self.access.by_token(given)
        if client is None:
            raise Problem(403, "forbidden", "no access entry for this client")
        return client

    def _authenticate(self, request: Request, path: str, conn: Connection) -> Proven | None:
        """Check the token or its proof; return what the answer must prove, if anything."""
        token = self.agent.token
        if token is None:  # a unix socket: its file permissions decide
            return None
        auth = request.headers.get(proof.AUTH_HEADER.lower())
        if auth is not None:
            parts = auth.split(" ")
            challenge, nonce, mac = parts if len(parts) == 3 else ("", "", "")
            issued, conn.challenge = conn.challenge, None  # single use, whatever happens
            fresh = issued is not None and time.monotonic() < conn.challenge_until
            expected = proof.request_mac(token, challenge, nonce, request.method, request.target)
            if (
                fresh
                and proof.same(challenge, issued or "")
                and nonce
                and proof.same(mac, expected)
            ):
                return Proven(challenge, nonce)
            raise Problem(403, "forbidden", "a wrong, stale or reused challenge answer")
        if path in OPEN:
            return None
        given = request.headers.get(TOKEN_HEADER, "")
        if not proof.same(given, token):
            raise Problem(403, "forbidden", "a missing or wrong X-Cloudchain-Token")
        return None

    async def _answer(
        self, request: Request, conn: Connection
    ) -> tuple[int, Answer, Proven | None, str | None]:
        """The status and answer to a request, what its proof covers (if anything), and the
        access file's name of its client (if any)."""
        headers = request.headers
        if "x-forwarded-for" in headers or "forwarded" in headers:
            raise Problem(403, "forbidden", "forwarded requests are refused")
        if headers.get("host", "").lower() not in self.hosts:
            raise Problem(421, "wrong_host", "the Host header does not name this agent")
        url = urlsplit(request.target)
        if url.path == proof.CHALLENGE_PATH and request.method == "GET":
            conn.challenge = proof.nonce()
            conn.challenge_until = time.monotonic() + proof.CHALLENGE_SECONDS
            return 200, json_answer({"challenge": conn.challenge}), None, None
        route = self.agent.routes().get(url.path)
        if route is None:
            raise Problem(404, "no_such_path", f"no such path: {url.path}")
        if request.method != route.method:
            raise Problem(405, "method_not_allowed", f"{url.path} takes {route.method}")
        if self.access is not None:
            client, proven = self._identify(request, url.path, conn), None
        else:
            client, proven = None, self._authenticate(request, url.path, conn)
        name = client.name if client is not None else None  # for the log and /metrics
        try:
            return 200, await self._route(route, url.path, url.query, conn, client), proven, name
        except Problem as problem:  # answered, and proven like any answer
            return problem.status, problem_answer(problem), proven, name

    async def _route(
        self, route: Route, path: str, query: str, conn: Connection, client: Client | None
    ) -> Answer:
        try:
            params = parse_qs(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:
            raise Problem(400, "bad_request", "the query has too many fields") from None
        if self.access is not None and path not in OPEN:
            from .access import guard, tagged

            params = guard(client, path, params)  # before anything is looked up
            if client is not None and client.tags and path == "/v1/secret":
                route = route._replace(handle=tagged(client, self.agent.cached.service,
                                                     route.handle))  # fmt: skip
        try:
            if path == WATCH_PATH:  # waits on the loop, never on a thread
                return await self.watchers.answer(params, conn)
            if path == "/v1/secret" and route.handle == self.agent.secret:
                cached = self.agent.cached_secret(params)  # on the loop: it never waits
                if cached is not None:
                    return cached
            if route.blocking:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self.pool, route.handle, params)
            return route.handle(params)
        except CloudChainError as err:
            raise problem_for(err) from None

    def _prove(self, status: int, answer: Answer, proven: Proven | None) -> None:
        if proven is None or self.agent.token is None:
            return
        answer.headers[proof.PROOF_HEADER] = proof.answer_mac(
            self.agent.token, proven.nonce, proven.challenge, status, answer.content_type,
            answer.headers.get("X-Cloudchain-Version", ""), answer.body,
        )  # fmt: skip

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection until the client closes it, falls silent, errs or is refused."""
        conn = self.connections.admit(writer)
        if conn is None:
            writer.transport.abort()
            return
        conn.reader = reader
        try:
            if self.tls is not None and HANDSHAKE_ADMITTED:
                await writer.start_tls(self.tls, ssl_handshake_timeout=CLIENT_TIMEOUT)  # type: ignore[attr-defined]
            if self.access is not None:
                from .access import peer_client
                from .tls import peer_subject

                tls = writer.get_extra_info("ssl_object")
                subject = peer_subject(tls.getpeercert(binary_form=True)) if tls else None
                conn.client = peer_client(self.access, writer.get_extra_info("socket"), subject)
            keep = True
            while keep:
                conn.idle()
                try:
                    request = await read_request(reader)
                    if request is None:
                        break
                    conn.busy()
                    started = time.monotonic()
                    keep = request.headers.get("connection", "").lower() != "close" and (
                        request.version != "HTTP/1.0"
                    )
                    try:
                        status, answer, proven, name = await self._answer(request, conn)
                    except Problem as refused:  # before any route: no proof, and close
                        status, answer, proven = refused.status, problem_answer(refused), None
                        name = None
                    # Only a plain not-found keeps the connection: whatever else was not
                    # answered 200 ends it, so nothing after a refusal is read.
                    keep = keep and (status == 200 or answer.code == "not_found")
                    took = (time.monotonic() - started) * 1000
                    path = urlsplit(request.target).path
                    self.requests.request(request.method, path, status, took, name)
                except Problem as problem:  # the request itself was unreadable: answer, close
                    answer, status, keep, proven = (
                        problem_answer(problem),
                        problem.status,
                        False,
                        None,
                    )
                    name = None
                self._prove(status, answer, proven)
                self.agent.count(status, name)
                writer.write(response(status, answer, keep))
                conn.idle()  # a client that does not read its answers is idle, and evictable
                await asyncio.wait_for(writer.drain(), CLIENT_TIMEOUT)
        except (Closed, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        except Exception as err:  # a bug must cost this connection, not the agent's log
            log.warning("dropped a connection on an unexpected %s", type(err).__name__)
            log.debug("the unexpected error", exc_info=True)
        finally:
            self.connections.release(conn)
            writer.close()


async def serve(
    server: AgentServer, sock: socket.socket, address: Address, ready: Callable[[], None],
    stop: asyncio.Event,
) -> None:  # fmt: skip
    """Serve on sock until stop is set."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(quiet_exceptions)
    limit = MAX_REQUEST_LINE + 2  # a request or header line; longer is 414 or 431
    if address.path is not None:
        listening = await asyncio.start_unix_server(
            server.connection, sock=sock, limit=limit, backlog=BACKLOG
        )
    else:
        early = server.tls if not HANDSHAKE_ADMITTED else None  # else in connection()
        listening = await asyncio.start_server(
            server.connection, sock=sock, limit=limit, backlog=BACKLOG, ssl=early,
            ssl_handshake_timeout=CLIENT_TIMEOUT if early else None,
        )  # fmt: skip
    ready()
    async with listening:
        await stop.wait()
    server.watchers.close()
    server.pool.shutdown(wait=False, cancel_futures=True)
