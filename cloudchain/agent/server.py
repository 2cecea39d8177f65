"""cchain-agent: serve secrets to this machine over HTTP/1.1, from a cache, reading only.

    GET  /v1/secret?service=S&user=U[&version=N]   the secret; X-Cloudchain-Version: N
    GET  /v1/service?service=S[&format=json|dotenv|env][&prefix=P][&tag=K=V][&allow_env=NAME]
                                                    the whole service, as `cchain --export`
    POST /v1/refresh?service=S[&user=U]             forget what is cached of it
    GET  /healthz                                   {"status": "ok"}; no token, no secret
    GET  /metrics                                   Prometheus text format

One asyncio event loop serves every connection (kept alive, HTTP/1.1): a secret the cache
holds is answered on the loop itself, and anything that may wait for AWS runs on a pool of
threads, so a miss, a slow AWS or a slow client holds up nobody else. routes.py says what each
path answers; this module speaks HTTP, checks the token and headers, and logs one line a
request: method, path (never the query), status, duration.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from .._version import __version__
from ..commands.spec import CONFIG_FLAGS, CONFIGURATION
from ..errors import CloudChainError, ValidationError
from .cached import CachedSecrets
from .listen import Address, bind_tcp, bind_unix, load_token, parse_listen
from .routes import Agent, Answer, Problem, problem_for

PROG = "cchain-agent"
TOKEN_HEADER = "x-cloudchain-token"
MAX_REQUEST_LINE = 8192  # the query string with it; longer is 414
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
MAX_QUERY_FIELDS = 64
CLIENT_TIMEOUT = 10.0  # a client silent this long is dropped
BACKLOG = 256  # a burst of clients queues at connect instead of being refused
log = logging.getLogger("cloudchain.agent")


class _Closed(Exception):
    """The client went away, timed out, or sent what cannot be answered: close."""


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    """Read a request line and headers; None at a clean end of the connection."""
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\n"), CLIENT_TIMEOUT)
    except asyncio.IncompleteReadError as eof:
        if eof.partial:
            raise _Closed from None
        return None
    except asyncio.LimitOverrunError:
        raise Problem(414, "too_long", "the request line is too long") from None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise Problem(400, "bad_request", "not an HTTP/1.x request line")
    headers: dict[str, str] = {}
    size = 0
    while True:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\n"), CLIENT_TIMEOUT)
        except asyncio.LimitOverrunError:
            raise Problem(431, "too_long", "a header line is too long") from None
        if raw in (b"\r\n", b"\n"):
            break
        size += len(raw)
        if len(headers) >= MAX_HEADERS or size > MAX_HEADER_BYTES:
            raise Problem(431, "too_long", "too many header lines")
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    headers[":version"] = parts[2]
    return parts[0], parts[1], headers


def _response(status: int, answer: Answer, keep: bool) -> bytes:
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Server: {PROG}/{__version__}",
        f"Content-Type: {answer.content_type}",
        f"Content-Length: {len(answer.body)}",
        "Cache-Control: no-store",
        *(f"{name}: {value}" for name, value in answer.headers.items()),
    ]
    if not keep:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + answer.body


def _problem_answer(problem: Problem) -> Answer:
    body = {"error": problem.args[0], "code": problem.code}
    if problem.hint:
        body["hint"] = problem.hint
    return Answer(json.dumps(body).encode(), "application/json")


class AgentServer:
    """The HTTP side of one agent."""

    def __init__(self, agent: Agent, workers: int) -> None:
        self.agent = agent
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agent")

    async def _answer(self, method: str, target: str, headers: dict[str, str]) -> Answer:
        if "x-forwarded-for" in headers or "forwarded" in headers:
            raise Problem(403, "forbidden", "forwarded requests are refused")
        url = urlsplit(target)
        route = self.agent.routes().get(url.path)
        if route is None:
            raise Problem(404, "no_such_path", f"no such path: {url.path}")
        if method != route.method:
            raise Problem(405, "method_not_allowed", f"{url.path} takes {route.method}")
        token = self.agent.token
        if token is not None and url.path != "/healthz":
            given = headers.get(TOKEN_HEADER, "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise Problem(403, "forbidden", "a missing or wrong X-Cloudchain-Token")
        try:
            params = parse_qs(url.query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:
            raise Problem(400, "bad_request", "the query has too many fields") from None
        if url.path == "/v1/secret":
            cached = self.agent.cached_secret(params)  # on the loop: it never waits
            if cached is not None:
                return cached
        try:
            if route.blocking:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self.pool, route.handle, params)
            return route.handle(params)
        except CloudChainError as err:
            raise problem_for(err) from None

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection until the client closes it, falls silent, or errs."""
        try:
            while True:
                keep = True
                try:
                    head = await _read_head(reader)
                    if head is None:
                        break
                    method, target, headers = head
                    started = asyncio.get_running_loop().time()
                    keep = headers.get("connection", "").lower() != "close" and (
                        headers[":version"] != "HTTP/1.0"
                    )
                    if headers.get("content-length", "0") not in ("", "0"):
                        raise Problem(413, "bad_request", "requests have no body")
                    try:
                        answer, status = await self._answer(method, target, headers), 200
                    except Problem as problem:
                        answer, status = _problem_answer(problem), problem.status
                    took = (asyncio.get_running_loop().time() - started) * 1000
                    log.info("%s %s %d %.1f ms", method, urlsplit(target).path, status, took)
                except Problem as problem:  # the request itself was unreadable: answer, close
                    answer, status, keep = _problem_answer(problem), problem.status, False
                self.agent.count(status)
                writer.write(_response(status, answer, keep))
                await writer.drain()
                if not keep:
                    break
        except (_Closed, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for cchain-agent: its own flags and cchain's configuration."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve secrets to this machine from a cache: a unix socket by default, or "
        "loopback TCP with a token. It reads, and never writes.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    own = parser.add_argument_group("agent")
    own.add_argument("--listen", metavar="ADDRESS", help="unix:PATH (default "
                     "$XDG_RUNTIME_DIR/cloudchain/agent.sock) or 127.0.0.1:PORT")  # fmt: skip
    own.add_argument("--token-file", metavar="FILE", help="TCP: the token, else "
                     "CLOUDCHAIN_AGENT_TOKEN, else a new one in a 0600 file")  # fmt: skip
    own.add_argument("--ttl", type=float, default=300.0, metavar="S", help="seconds a value is "
                     "served from the cache (default 300)")  # fmt: skip
    own.add_argument("--stale-if-error", type=float, default=3600.0, metavar="S",
                     help="seconds past its TTL a value is still served while AWS fails "
                     "(default 3600)")  # fmt: skip
    own.add_argument(
        "--max-entries",
        type=int,
        default=1000,
        metavar="N",
        help="entries held, least recently used dropped first (default 1000)",
    )
    own.add_argument(
        "--prefetch",
        action="append",
        default=[],
        metavar="SERVICE",
        help="load SERVICE at start and keep it fresh (repeatable)",
    )
    own.add_argument("--debug", action="store_true", help="debug log (never a secret)")
    group = parser.add_argument_group(CONFIGURATION.title)
    for option in CONFIGURATION.options:
        group.add_argument(*option.flags, help=option.help, **option.kwargs)
    return parser


def _check(args: argparse.Namespace) -> None:
    for name, value in (("--ttl", args.ttl), ("--stale-if-error", args.stale_if_error)):
        if not value >= 0:
            raise ValidationError(f"{name} must be 0 or more seconds")
    if args.max_entries < 1:
        raise ValidationError("--max-entries must be at least 1")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent until SIGTERM or SIGINT; return the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(format=f"{PROG}: %(message)s", stream=sys.stderr, level=logging.WARNING)
    logging.getLogger("cloudchain").setLevel(logging.DEBUG if args.debug else logging.INFO)
    try:
        import prometheus_client  # noqa: F401 - only to fail early without the extra
    except ImportError:
        print(f"{PROG}: error: the agent needs cloudchain[agent]: "
              "pip install 'cloudchain[agent]'", file=sys.stderr)  # fmt: skip
        return 1
    try:
        return _run(args)
    except CloudChainError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"{PROG}: hint: {err.hint}", file=sys.stderr)
        return 2 if isinstance(err, ValidationError) else 1
    except OSError as err:
        print(f"{PROG}: error: {err.strerror or err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import os

    from ..chain import CloudChain

    _check(args)
    address = parse_listen(args.listen, os.environ)
    overrides = {field: getattr(args, flag) for flag, field in CONFIG_FLAGS.items()}
    chain = CloudChain.from_config(args.config, **{**overrides, "cache_ttl": 0})
    cached = CachedSecrets(chain, ttl=args.ttl, stale_if_error=args.stale_if_error,
                           max_entries=args.max_entries, prefetch=args.prefetch)  # fmt: skip
    token, token_file = (None, None) if address.path else load_token(args.token_file, os.environ)
    sock = bind_unix(address.path) if address.path else bind_tcp(address)
    try:
        cached.start()  # prefetch before answering: a prefetched read never waits
        if address.port == 0 and not address.path:
            address = Address(host=address.host, port=int(sock.getsockname()[1]))
        server = AgentServer(Agent(cached, token), workers=chain.config.max_workers)

        def ready() -> None:
            print(f"export CLOUDCHAIN_AGENT={address}", flush=True)
            if token_file is not None:
                print(f"export CLOUDCHAIN_AGENT_TOKEN_FILE={token_file}", flush=True)
            log.warning("serving table '%s' on %s%s", chain.config.tablename, address,
                        f"; token in {token_file}" if token_file else "")  # fmt: skip

        asyncio.run(_serve(server, sock, address, ready))
    finally:
        cached.stop()
        sock.close()
        if address.path is not None:
            address.path.unlink(missing_ok=True)
    log.warning("stopped")
    return 0


async def _serve(
    server: AgentServer, sock: socket.socket, address: Address, ready: Callable[[], None]
) -> None:
    """Serve on sock until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    limit = MAX_REQUEST_LINE + 2
    if address.path is not None:
        listening = await asyncio.start_unix_server(
            server.connection, sock=sock, limit=limit, backlog=BACKLOG
        )
    else:
        listening = await asyncio.start_server(
            server.connection, sock=sock, limit=limit, backlog=BACKLOG
        )
    ready()
    async with listening:
        await stop.wait()
    server.pool.shutdown(wait=False, cancel_futures=True)
