"""The agent's client: the Python standard library only, and nothing of the AWS stack, so that
`cchain --read` and `cloudchain.readcreds` through an agent start in a few milliseconds. It
speaks HTTP/1.1 over a plain socket: http.client would cost more to import (its e-mail header
parser, ssl) than the whole request takes, and the one server it talks to is the agent.

CLOUDCHAIN_AGENT names the agent: `unix:PATH`, or `http://127.0.0.1:PORT` with a token from
CLOUDCHAIN_AGENT_TOKEN or the file named by CLOUDCHAIN_AGENT_TOKEN_FILE. An agent that cannot be
reached raises AgentUnavailable, and the caller goes to AWS directly; an agent that answers
raises the same CloudChainError, with the same message, as a direct read would.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Mapping
from urllib.parse import urlencode, urlparse

from .. import errors

AGENT_ENV = "CLOUDCHAIN_AGENT"
TOKEN_ENV = "CLOUDCHAIN_AGENT_TOKEN"
TOKEN_FILE_ENV = "CLOUDCHAIN_AGENT_TOKEN_FILE"
TOKEN_HEADER = "X-Cloudchain-Token"
VERSION_HEADER = "X-Cloudchain-Version"
# A healthy agent answers from memory in about a millisecond; one that takes longer than this
# is as good as gone, and AWS directly is the better bet.
TIMEOUT = 5.0

# The agent's error codes, and the error each becomes (its exit code follows from the class).
ERRORS: dict[str, type[errors.CloudChainError]] = {
    "bad_request": errors.ValidationError,
    "not_found": errors.SecretNotFoundError,
    "refused": errors.CloudChainError,
    "access_denied": errors.AccessDeniedError,
    "integrity": errors.IntegrityError,
    "config": errors.CloudChainConfigError,
    "aws_error": errors.CloudChainError,
    "unavailable": errors.EndpointError,
    "throttled": errors.ThrottledError,
}


class AgentUnavailable(Exception):
    """The agent could not be reached or cannot serve this request: go to AWS directly."""


# The largest answer read: a whole service's export, with room for its headers.
MAX_ANSWER = 64 * 1024 * 1024


def _parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """Split an HTTP/1.1 answer into its status, headers and body."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    if not separator:
        raise ValueError("the answer ended before its headers did")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    if len(body) < length:
        raise ValueError("the answer ended before its body did")
    return status, headers, body[:length]


class AgentClient:
    """Talks to one agent."""

    def __init__(self, address: str, token: str | None = None, timeout: float = TIMEOUT) -> None:
        self.address = address
        self._token = token
        self._timeout = timeout

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> AgentClient | None:
        """The agent CLOUDCHAIN_AGENT names, or None when it is not set."""
        environ = os.environ if environ is None else environ
        address = environ.get(AGENT_ENV, "").strip()
        if not address:
            return None
        token = environ.get(TOKEN_ENV) or None
        token_file = environ.get(TOKEN_FILE_ENV)
        if token is None and token_file:
            try:
                with open(token_file, encoding="utf-8") as handle:
                    token = handle.read().strip()
            except OSError as err:
                raise AgentUnavailable(
                    f"cannot read the agent token {token_file}: {err.strerror}"
                ) from None
        return cls(address, token)

    def _connect(self) -> socket.socket:
        if self.address.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._timeout)
            try:
                sock.connect(self.address[len("unix:") :])
            except OSError:
                sock.close()
                raise
            return sock
        url = urlparse(self.address if "://" in self.address else f"http://{self.address}")
        if url.scheme != "http" or not url.hostname:
            raise AgentUnavailable(
                f"{AGENT_ENV}={self.address!r} is not unix:PATH or http://HOST:PORT"
            )
        return socket.create_connection((url.hostname, url.port or 80), self._timeout)

    def request(
        self, method: str, path: str, query: list[tuple[str, str]]
    ) -> tuple[bytes, dict[str, str]]:
        """Send one request; return the body and headers of a 200, raise the CloudChainError
        for an error answer, or AgentUnavailable when there is no usable answer."""
        target = path + ("?" + urlencode(query) if query else "")
        lines = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close",
                 "Content-Length: 0"]  # fmt: skip
        if self._token:
            lines.append(f"{TOKEN_HEADER}: {self._token}")
        try:
            with self._connect() as sock:
                sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
                chunks, size = [], 0
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_ANSWER:
                        raise ValueError("the answer is too large")
            status, headers, body = _parse(b"".join(chunks))
        except (OSError, ValueError, IndexError) as err:
            raise AgentUnavailable(f"cannot reach the agent at {self.address} ({err})") from None
        if status == 200:
            return body, headers
        try:
            problem = json.loads(body)
            code, message, hint = problem["code"], problem["error"], problem.get("hint")
        except (ValueError, KeyError, TypeError):
            raise AgentUnavailable(f"the agent answered {status}") from None
        error = ERRORS.get(code)
        if error is None:  # forbidden, no such path: this agent cannot serve us
            raise AgentUnavailable(f"the agent answered {status}: {message}")
        raise error(message, hint=hint)

    def read(self, service: str, user: str, version: int | None = None) -> tuple[str | bytes, int]:
        """Return a secret (bytes if saved as bytes) and its version number."""
        query = [("service", service), ("user", user)]
        if version is not None:
            query.append(("version", str(version)))
        body, headers = self.request("GET", "/v1/secret", query)
        number = int(headers.get(VERSION_HEADER.lower(), "0"))
        if headers.get("content-type", "").startswith("application/octet-stream"):
            return body, number
        return body.decode("utf-8"), number

    def export(self, service: str, tags: Mapping[str, str] | None = None) -> dict[str, str | bytes]:
        """Return every current secret of service (with all of tags), as export() does."""
        query = [("service", service), ("format", "json")]
        query += [("tag", f"{k}={v}") for k, v in (tags or {}).items()]
        body, _ = self.request("GET", "/v1/service", query)
        return {
            user: base64.b64decode(value["base64"]) if isinstance(value, dict) else value
            for user, value in json.loads(body).items()
        }

    def refresh(self, service: str, user: str | None = None) -> None:
        """Drop what the agent holds of service (or of one of its users)."""
        query = [("service", service)] + ([("user", user)] if user is not None else [])
        self.request("POST", "/v1/refresh", query)

    def health(self) -> dict[str, str]:
        """The agent's /healthz answer."""
        body, _ = self.request("GET", "/healthz", [])
        result: dict[str, str] = json.loads(body)
        return result
