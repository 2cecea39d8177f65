"""An HTTP proxy for fault tests: forwards to a moto server, or throttles, drops or hangs.

Test utility only. Each request's AWS operation is read from its X-Amz-Target header
(`TrentService.Decrypt`, `DynamoDB_20120810.GetItem`), counted, and handed to a policy that
returns what to do with it: "forward", "throttle", "disabled" (KMS's answer for a disabled
key, which moto does not enforce), "drop" or "hang".
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

# (operation, its 1-based count so far, request body) -> action
Policy = Callable[[str, int, bytes], str]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


def forward_all(operation: str, count: int, body: bytes) -> str:
    return "forward"


class FaultProxy:
    """A threaded HTTP proxy on a free loopback port in front of upstream_port."""

    def __init__(self, upstream_port: int, policy: Policy = forward_all) -> None:
        self.upstream_port = upstream_port
        self.policy = policy
        self.counts: Counter[str] = Counter()
        self.bodies: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                operation = self.headers.get("X-Amz-Target", "").split(".")[-1] or "other"
                with proxy._lock:
                    proxy.counts[operation] += 1
                    proxy.bodies.append((operation, body))
                    action = proxy.policy(operation, proxy.counts[operation], body)
                if action == "drop":
                    self.close_connection = True
                    self.connection.close()
                elif action == "hang":
                    proxy._release.wait(120)
                    self.close_connection = True
                elif action == "throttle":
                    self._reply(400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
                elif action == "disabled":
                    self._reply(400, {"__type": "DisabledException", "message": "key disabled"})
                else:
                    self._forward(body)

            def _reply(self, status: int, payload: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream.request("POST", self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def count(self, operation: str, containing: bytes = b"") -> int:
        """How many requests of an operation, optionally whose body contains some bytes."""
        with self._lock:
            return sum(1 for op, body in self.bodies if op == operation and containing in body)
