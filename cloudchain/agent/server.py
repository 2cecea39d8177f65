"""cchain-agent: serve secrets to this machine over HTTP/1.1, from a cache, reading only.

    GET  /v1/secret?service=S&user=U[&version=N]   the secret; X-Cloudchain-Version: N
    GET  /v1/service?service=S[&format=json|dotenv|env][&prefix=P][&tag=K=V][&allow_env=NAME]
                                                    the whole service, as `cchain --export`
    POST /v1/refresh?service=S[&user=U]             forget what is cached of it
    GET  /healthz                                   {"status": "ok"}; no token, no secret
    GET  /metrics                                   Prometheus text format

An error is {"error": "...", "code": "...", "hint": "..."} and never holds a secret. Over TCP
every request but /healthz must carry X-Cloudchain-Token; a request with X-Forwarded-For or
Forwarded is refused (403), so a proxy on this machine cannot be turned against it (SSRF).
Each request gets one access-log line: method, path (never the query), status, duration.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import signal
import socketserver
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .._version import __version__
from ..commands.spec import CONFIG_FLAGS, CONFIGURATION
from ..envfile import check_loader_variables, check_prefix, env_names, render
from ..errors import (
    AccessDeniedError,
    CloudChainConfigError,
    CloudChainError,
    EndpointError,
    IntegrityError,
    SecretNotFoundError,
    ThrottledError,
    ValidationError,
)
from .cached import CachedSecrets
from .listen import Address, bind_tcp, bind_unix, load_token, parse_listen

PROG = "cchain-agent"
TOKEN_HEADER = "X-Cloudchain-Token"
MAX_REQUEST_LINE = 8192  # the query string with it; longer is 414
MAX_QUERY_FIELDS = 64
CLIENT_TIMEOUT = 10.0  # a client silent this long is dropped: it holds up only its thread
log = logging.getLogger("cloudchain.agent")


class Problem(Exception):
    """An answer other than 200: its status, code and message (never a secret)."""

    def __init__(self, status: int, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.hint = status, code, hint


def problem_for(err: CloudChainError) -> Problem:
    """The HTTP answer for a library error."""
    hint = err.hint
    if isinstance(err, ValidationError):
        return Problem(400, "bad_request", str(err), hint)
    if isinstance(err, SecretNotFoundError):
        return Problem(404, "not_found", str(err), hint)
    if isinstance(err, EndpointError):
        code = "throttled" if isinstance(err, ThrottledError) else "unavailable"
        return Problem(503, code, str(err), hint)
    if isinstance(err, AccessDeniedError):
        return Problem(502, "access_denied", str(err), hint)
    if isinstance(err, IntegrityError):
        return Problem(502, "integrity", str(err), hint)
    if isinstance(err, CloudChainConfigError):
        return Problem(502, "config", str(err), hint)
    return Problem(502, "aws_error", str(err), hint)


class Answer:
    """A 200: its body, content type and extra headers."""

    def __init__(self, body: bytes, content_type: str, headers: dict[str, str] | None = None):
        self.body, self.content_type, self.headers = body, content_type, headers or {}


def _json(data: Any) -> Answer:
    return Answer(json.dumps(data, ensure_ascii=False).encode(), "application/json")


class Agent:
    """What the handlers share: the secrets, the token (TCP only), and request counts."""

    def __init__(self, cached: CachedSecrets, token: str | None) -> None:
        self.cached = cached
        self.token = token
        self.statuses: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.registry = _registry(self)

    @staticmethod
    def _one(params: dict[str, list[str]], name: str, required: bool = True) -> str | None:
        values = params.get(name, [])
        if len(values) > 1:
            raise Problem(400, "bad_request", f"{name} is given more than once")
        if not values:
            if required:
                raise Problem(400, "bad_request", f"the query needs {name}=")
            return None
        return values[0]

    def secret(self, params: dict[str, list[str]]) -> Answer:
        service, user = self._one(params, "service"), self._one(params, "user")
        version = self._one(params, "version", required=False)
        if version is not None and not version.isdigit():
            raise Problem(400, "bad_request", "version must be a whole number")
        found = self.cached.secret(str(service), str(user), int(version) if version else None)
        headers = {"X-Cloudchain-Version": str(found.version)}
        if isinstance(found.value, bytes):
            return Answer(found.value, "application/octet-stream", headers)
        return Answer(found.value.encode("utf-8"), "text/plain; charset=utf-8", headers)

    def service(self, params: dict[str, list[str]]) -> Answer:
        service = str(self._one(params, "service"))
        fmt = self._one(params, "format", required=False) or "json"
        if fmt not in ("json", "dotenv", "env"):
            raise Problem(400, "bad_request", "format must be json, dotenv or env")
        prefix = check_prefix(self._one(params, "prefix", required=False) or "")
        tags = {}
        for tag in params.get("tag", []):
            key, equals, value = tag.partition("=")
            if not equals:
                raise Problem(400, "bad_request", f"tag {tag!r} must be KEY=VALUE")
            tags[key] = value
        values = {u: v.value for u, v in self.cached.service(service, tags).items()}
        names = {} if fmt == "json" else env_names(service, list(values), prefix)
        check_loader_variables(service, names, set(params.get("allow_env", [])))
        try:
            text = render(fmt, values, names)
        except CloudChainError as err:  # a value that cannot be written in this format
            raise Problem(422, "refused", str(err), err.hint) from None
        kind = "application/json" if fmt == "json" else "text/plain; charset=utf-8"
        return Answer(text.encode("utf-8"), kind)

    def refresh(self, params: dict[str, list[str]]) -> Answer:
        service = str(self._one(params, "service"))
        user = self._one(params, "user", required=False)
        return _json({"dropped": self.cached.refresh(service, user)})

    def health(self, params: dict[str, list[str]]) -> Answer:
        return _json({"status": "ok"})

    def metrics(self, params: dict[str, list[str]]) -> Answer:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Answer(generate_latest(self.registry), CONTENT_TYPE_LATEST)

    def routes(self) -> dict[str, tuple[str, Callable[[dict[str, list[str]]], Answer]]]:
        """Path -> (method, handler)."""
        return {
            "/v1/secret": ("GET", self.secret),
            "/v1/service": ("GET", self.service),
            "/v1/refresh": ("POST", self.refresh),
            "/healthz": ("GET", self.health),
            "/metrics": ("GET", self.metrics),
        }


def _registry(agent: Agent) -> Any:
    """A Prometheus registry of the agent's own counts, read when /metrics is asked."""
    from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

    class Collector:
        def collect(self) -> Any:
            stats, counters, cache = (
                agent.cached.cache.stats,
                agent.cached.counters,
                agent.cached.cache,
            )
            for name, text, value in (
                ("cloudchain_agent_cache_hits", "reads answered from the cache", stats.hits),
                ("cloudchain_agent_cache_misses", "reads that fetched from AWS", stats.misses),
                ("cloudchain_agent_refreshes", "prefetched services reloaded", counters.refreshes),
                ("cloudchain_agent_stale_served", "reads answered past their TTL", stats.stale),
                ("cloudchain_agent_aws_errors", "fetches that AWS failed", counters.aws_errors),
            ):
                yield CounterMetricFamily(name, text, value=value)
            yield GaugeMetricFamily("cloudchain_agent_cached_entries", "entries held", len(cache))
            requests = CounterMetricFamily(
                "cloudchain_agent_requests", "requests answered, by status", labels=["status"]
            )
            with agent.lock:
                for status, count in sorted(agent.statuses.items()):
                    requests.add_metric([str(status)], count)
            yield requests

    registry = CollectorRegistry()
    registry.register(Collector())  # type: ignore[arg-type]
    return registry


class Handler(BaseHTTPRequestHandler):
    """One connection: HTTP/1.1, kept alive, bounded and timed out."""

    protocol_version = "HTTP/1.1"
    server_version = f"{PROG}/{__version__}"
    sys_version = ""
    timeout = CLIENT_TIMEOUT
    agent: Agent  # set on the class the server uses

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the access log below says what happened, and never more

    def version_string(self) -> str:
        return self.server_version

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        except TimeoutError:
            self.close_connection = True
            return
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline = self.request_version = self.command = ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():  # headers: at most 100, each at most 64 KiB
            return
        self._serve()
        self.wfile.flush()

    def _serve(self) -> None:
        started = time.perf_counter()
        url = urlsplit(self.path)
        try:
            answer = self._answer(url.path, url.query)
            self._send(200, answer.body, answer.content_type, answer.headers)
            status = 200
        except Problem as problem:
            body = {"error": problem.args[0], "code": problem.code}
            if problem.hint:
                body["hint"] = problem.hint
            self._send(problem.status, json.dumps(body).encode(), "application/json")
            status = problem.status
        with self.agent.lock:
            self.agent.statuses[status] += 1
        took = (time.perf_counter() - started) * 1000
        log.info("%s %s %d %.1f ms", self.command, url.path, status, took)

    def _answer(self, path: str, query: str) -> Answer:
        if "X-Forwarded-For" in self.headers or "Forwarded" in self.headers:
            raise Problem(403, "forbidden", "forwarded requests are refused")
        route = self.agent.routes().get(path)
        if route is None:
            raise Problem(404, "no_such_path", f"no such path: {path}")
        method, handle = route
        if self.command != method:
            raise Problem(405, "method_not_allowed", f"{path} takes {method}")
        token = self.agent.token
        if token is not None and path != "/healthz":
            given = self.headers.get(TOKEN_HEADER, "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise Problem(403, "forbidden", f"a missing or wrong {TOKEN_HEADER}")
        try:
            params = parse_qs(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
            return handle(params)
        except ValueError as err:
            if isinstance(err, ValidationError):
                raise problem_for(err) from None
            raise Problem(400, "bad_request", "the query has too many fields") from None
        except CloudChainError as err:
            raise problem_for(err) from None

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


# socketserver's listen backlog is 5: a burst of clients past it would be refused at connect
# (a unix socket refuses at once, where TCP would retry).
BACKLOG = 256


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = BACKLOG


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    request_queue_size = BACKLOG


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
        server = _serve(sock, address, Agent(cached, token))
    except BaseException:
        sock.close()
        _remove(address)
        raise
    if address.port == 0 and not address.path:
        address = Address(host=address.host, port=int(sock.getsockname()[1]))
    print(f"export CLOUDCHAIN_AGENT={address}", flush=True)
    if token_file is not None:
        print(f"export CLOUDCHAIN_AGENT_TOKEN_FILE={token_file}", flush=True)
    log.warning("serving table '%s' on %s%s", chain.config.tablename, address,
                f"; token in {token_file}" if token_file else "")  # fmt: skip
    return _wait(server, cached, address)


def _serve(sock: Any, address: Address, agent: Agent) -> socketserver.BaseServer:
    handler = type("AgentHandler", (Handler,), {"agent": agent})
    server: socketserver.BaseServer
    if address.path is not None:
        server = _UnixServer(str(address.path), handler, bind_and_activate=False)
    else:
        server = _TCPServer((address.host, address.port), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock  # type: ignore[attr-defined]
    server.server_address = sock.getsockname()
    server.server_activate()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="agent", daemon=True).start()
    return server


def _wait(server: socketserver.BaseServer, cached: CachedSecrets, address: Address) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    cached.stop()
    server.shutdown()
    server.server_close()
    _remove(address)
    log.warning("stopped")
    return 0


def _remove(address: Address) -> None:
    if address.path is not None:
        address.path.unlink(missing_ok=True)
