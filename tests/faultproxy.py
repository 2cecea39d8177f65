"""An HTTP proxy for fault tests: forwards to a moto server, or fails requests in chosen ways.

Test utility only. Each request's AWS operation is read from its X-Amz-Target header
(`TrentService.Decrypt`, `DynamoDB_20120810.GetItem`) or, for query-protocol services such as
STS, from the Action in its form body; it is counted, recorded, and handed to a policy that
returns what to do with it:

- "forward": pass it on and return the reply;
- "lose-reply": pass it on, then close the connection without replying, as a reply lost on the
  network does (the write has happened; the client sees a dropped connection and retries);
- "hold": wait until release() is called, then forward;
- "delay:S": wait S seconds, then forward;
- "drop": close the connection without forwarding; "hang": never answer (until the proxy stops);
- "throttle", "disabled", "denied", "error500": answer with that error without forwarding
  ("disabled" is KMS's answer for a disabled key, which moto does not enforce).

Each request's region is read from its signature's credential scope, so one proxy in front of
a moto server serving several regions tells them apart; `rewrite`, when set, may change a
forwarded reply (moto ignores ReplicaUpdates, so a test can show the replicas AWS would list).
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

# (operation, its 1-based count so far, request body) -> action
Policy = Callable[[str, int, bytes], str]
# (operation, region, reply body) -> the reply body to send
Rewrite = Callable[[str, str, bytes], bytes]
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")


class Request(NamedTuple):
    operation: str
    region: str
    body: bytes


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}
ERRORS = {
    "throttle": (400, "ThrottlingException", "Rate exceeded"),
    "disabled": (400, "DisabledException", "key disabled"),
    "denied": (400, "AccessDeniedException", "not authorized to perform this operation"),
    "error500": (500, "InternalServerError", "the server failed"),
}


def forward_all(operation: str, count: int, body: bytes) -> str:
    return "forward"


def operation_of(target: str, body: bytes) -> str:
    """The AWS operation of a request: JSON protocols name it in X-Amz-Target, query
    protocols (STS) in the Action field of the form body."""
    if target:
        return target.split(".")[-1]
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return form.get("Action", ["other"])[0]


class FaultProxy:
    """A threaded HTTP proxy on a free loopback port in front of upstream_port."""

    def __init__(
        self, upstream_port: int, policy: Policy = forward_all, rewrite: Rewrite | None = None
    ) -> None:
        self.upstream_port = upstream_port
        self.policy = policy
        self.rewrite = rewrite
        self.counts: Counter[str] = Counter()
        self.bodies: list[tuple[str, bytes]] = []
        self.requests: list[Request] = []
        self.held = threading.Event()  # set when a request is being held
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._stopping = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                operation = operation_of(self.headers.get("X-Amz-Target", ""), body)
                scope = _SCOPE.search(self.headers.get("Authorization", ""))
                self.region = scope.group(1) if scope else ""
                with proxy._lock:
                    proxy.counts[operation] += 1
                    proxy.bodies.append((operation, body))
                    proxy.requests.append(Request(operation, self.region, body))
                    action = proxy.policy(operation, proxy.counts[operation], body)
                if action == "drop":
                    self._close()
                elif action == "hang":
                    proxy._stopping.wait(120)
                    self.close_connection = True
                elif action in ERRORS:
                    status, code, message = ERRORS[action]
                    self._reply(status, {"__type": code, "message": message})
                elif action == "lose-reply":
                    self._forward(body, reply=False)
                    self._close()
                else:
                    if action == "hold":
                        proxy.held.set()
                        proxy._release.wait(60)
                    elif action.startswith("delay:"):
                        time.sleep(float(action.split(":", 1)[1]))
                    self._forward(body, operation=operation)

            def _close(self) -> None:
                self.close_connection = True
                self.connection.close()

            def _reply(self, status: int, payload: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body: bytes, reply: bool = True, operation: str = "") -> None:
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream.request("POST", self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                if not reply:
                    return
                if proxy.rewrite is not None:
                    data = proxy.rewrite(operation, self.region, data)
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
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        """Let held requests through."""
        self._release.set()

    def count(self, operation: str, containing: bytes = b"") -> int:
        """How many requests of an operation, optionally whose body contains some bytes."""
        with self._lock:
            return sum(1 for op, body in self.bodies if op == operation and containing in body)

    def made(self, region: str | None = None) -> Counter[str]:
        """The operations requested so far, counted, in one region or all."""
        with self._lock:
            return Counter(r.operation for r in self.requests if region in (None, r.region))
