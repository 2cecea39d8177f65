"""cchain-local: a KMS + DynamoDB emulator (moto's server) on loopback, provisioned for cloudchain.

State lives in memory and is gone when the emulator stops.
"""

from __future__ import annotations

import argparse
import io
import logging
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any

from .config import DEFAULT_REGION
from .config_sources import load_config
from .errors import CloudChainError

PROG = "cchain-local"
DEFAULT_PORT = 4566
DEFAULT_ALIAS = "alias/cloudchain-local"
DEFAULT_TIMEOUT = 10.0
# moto accepts any credentials; these keep a machine without AWS credentials working.
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for cchain-local."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a local KMS + DynamoDB emulator with the cloudchain table and key. "
        "State is kept in memory only.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks one)"
    )
    parser.add_argument("--config", metavar="PATH", help="config file (default ~/.cchainrc)")
    parser.add_argument("--table", help="table to create (default: configured, else safedb)")
    parser.add_argument(
        "--key-alias", help=f"key alias to create (default: configured, else {DEFAULT_ALIAS})"
    )
    parser.add_argument("--region", help=f"region (default: configured, else {DEFAULT_REGION})")
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"drop a client that takes longer than S seconds to send a request "
        f"(default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def _check_free(host: str, port: int) -> None:
    # werkzeug prints its own multi-line message and exits on a busy port; ask first instead.
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, port))


class OneAtATime:
    """WSGI middleware that serves one request at a time.

    moto checks a DynamoDB condition and then writes, with no lock between the two; serving
    requests one at a time makes conditional writes atomic, as they are in DynamoDB, so
    check-and-set and concurrent saves behave locally as they do on AWS. Each request is read
    whole before the lock is taken, so a client that sends its body slowly, or never, holds up
    only itself (and the server's timeout drops it).
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length) if length else b"")
        with self._lock:
            return list(self._app(environ, start_response))


def start_server(host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Start moto's server in a daemon thread and return it; raises ImportError without moto.

    A client that takes longer than timeout seconds to send its request is disconnected.
    """
    _check_free(host, port)
    from moto.server import (  # type: ignore[attr-defined]
        DomainDispatcherApplication,
        create_backend_app,
    )
    from werkzeug.serving import WSGIRequestHandler, make_server

    class TimedHandler(WSGIRequestHandler):
        pass

    TimedHandler.timeout = timeout  # socketserver applies it to each connection
    app = OneAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=TimedHandler)
    threading.Thread(target=server.serve_forever, name=PROG, daemon=True).start()
    return server


def settings_text(endpoint: str, region: str, table: str, alias: str) -> str:
    """Return the .cchainrc and environment lines that point cloudchain at the emulator."""
    return (
        "# ~/.cchainrc\n"
        "[dynamo]\n"
        f"region_name = {region}\n"
        f"endpoint_url = {endpoint}\n"
        f"tablename = {table}\n\n"
        "[IAMKMS]\n"
        f"keyalias = {alias}\n\n"
        "# or, in the environment:\n"
        f"export CLOUDCHAIN_ENDPOINT_URL={endpoint}\n"
        f"export CLOUDCHAIN_REGION={region}\n"
        f"export CLOUDCHAIN_TABLE={table}\n"
        f"export CLOUDCHAIN_KEY_ALIAS={alias}\n"
        "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until interrupted; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        import boto3

        server = start_server(args.host, args.port, args.request_timeout)
    except ImportError:
        print(
            f"{PROG}: error: the emulator needs moto; install it with: pip install 'cloudchain[local]'",
            file=sys.stderr,
        )
        return 1
    except OSError as err:
        print(
            f"{PROG}: error: cannot listen on {args.host}:{args.port}: {err.strerror}",
            file=sys.stderr,
        )
        return 1
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    host, port = server.server_address[:2]
    endpoint = f"http://{host}:{port}"
    try:
        from .chain import CloudChain

        config = load_config(
            {"tablename": args.table, "keyalias": args.key_alias, "region_name": args.region},
            path=args.config,
        )
        region = config.region_name or DEFAULT_REGION
        alias = config.keyalias or DEFAULT_ALIAS
        chain = CloudChain(
            region_name=region,
            endpoint_url=endpoint,
            tablename=config.tablename,
            keyalias=alias,
            session=boto3.Session(**FAKE_CREDENTIALS),
        )
        chain.setup(create_key=True)
    except CloudChainError as err:
        server.shutdown()
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    print(
        f"{PROG}: KMS + DynamoDB emulator on {endpoint}; table '{config.tablename}' and key "
        f"{alias} are ready. State is in memory only. Ctrl-C stops it.",
        file=sys.stderr,
    )
    print(settings_text(endpoint, region, config.tablename, alias), flush=True)
    return _wait_for_stop(server)


def _wait_for_stop(server: Any) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.shutdown()
    print(f"{PROG}: stopped", file=sys.stderr)
    return 0
