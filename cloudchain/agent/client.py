"""The agent's client: the Python standard library only, and nothing of the AWS stack, so that
`cchain --read` and `cloudchain.readcreds` through an agent start in a few milliseconds. It
speaks HTTP/1.1 over a plain socket: http.client would cost more to import (its e-mail header
parser, ssl) than the whole request takes, and the one server it talks to is the agent.

CLOUDCHAIN_AGENT names the agent: `unix:PATH`, or `http://127.0.0.1:PORT` with a token from
CLOUDCHAIN_AGENT_TOKEN or the file named by CLOUDCHAIN_AGENT_TOKEN_FILE, or a cluster agent at
`https://HOST:PORT`, whose certificate is checked against CLOUDCHAIN_AGENT_CA (else the system's
CAs) and which is sent the token as a header (TLS, not a challenge, proves the agent there);
CLOUDCHAIN_AGENT_CERT and CLOUDCHAIN_AGENT_KEY give a client certificate. Only https imports
ssl, so the unix socket and loopback paths stay as quick as they were. An agent that cannot be
reached raises AgentUnavailable, and the caller goes to AWS directly; an agent that answers
raises the same CloudChainError, with the same message, as a direct read would.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Mapping
from urllib.parse import urlencode

from .. import errors
from ..validation import shown
from .dial import AGENT_ENV as AGENT_ENV
from .dial import TOKEN_ENV, TOKEN_FILE_ENV, TOKEN_FIX, connect, read_token_file
from .dial import AgentUnavailable as AgentUnavailable
from .wire import Answer, digits, receive, request_bytes

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


class _Unproven(ValueError):
    """An answer without the agent's proof: an impostor, or a token that is not the agent's."""


class AgentClient:
    """Talks to one agent."""

    def __init__(
        self,
        address: str,
        token: str | None = None,
        timeout: float = TIMEOUT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.address = address
        self._token = token
        self._timeout = timeout
        self._environ = os.environ if environ is None else environ

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> AgentClient | None:
        """The agent CLOUDCHAIN_AGENT names, or None when it is not set."""
        environ = os.environ if environ is None else environ
        address = environ.get(AGENT_ENV, "").strip()
        if not address:
            return None
        token = environ.get(TOKEN_ENV, "").strip() or None
        token_file = environ.get(TOKEN_FILE_ENV)
        if token is None and token_file:
            token = read_token_file(token_file)
        return cls(address, token, environ=environ)

    def request(
        self, method: str, path: str, query: list[tuple[str, str]], wait: float = 0.0
    ) -> tuple[bytes, dict[str, str]]:
        """Send one request; return the body and headers of a 200, raise the CloudChainError
        for an error answer, or AgentUnavailable when there is no answer we can believe.
        wait: seconds the agent may hold the answer back (a long-poll), beyond the timeout."""
        target = path + ("?" + urlencode(query) if query else "")
        deadline = time.monotonic() + self._timeout + wait
        try:
            sock, token, host, bearer = connect(self.address, self._token, self._environ, deadline)
            with sock:
                answer = self._exchange(sock, f"{method} {target}", host, token, deadline,
                                        bearer)  # fmt: skip
        except (OSError, ValueError) as err:
            why = err if str(err) else type(err).__name__
            fix = TOKEN_FIX if isinstance(err, _Unproven) else None
            raise AgentUnavailable(f"cannot reach the agent at {self.address} ({why})",
                                   fix) from None  # fmt: skip
        if answer.status == 200:
            return answer.body, answer.headers
        try:
            problem = json.loads(answer.body)
            code, message, hint = problem["code"], problem["error"], problem.get("hint")
            if not isinstance(message, str) or not isinstance(hint, (str, type(None))):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise AgentUnavailable(f"the agent answered {answer.status}") from None
        error = ERRORS.get(code) if isinstance(code, str) else None
        if error is None:  # forbidden, no such path: this agent cannot serve us
            raise AgentUnavailable(f"the agent answered {answer.status}: {shown(message)}")
        raise error(message, hint=hint)

    @staticmethod
    def _exchange(
        sock: socket.socket, request: str, host: str, token: str | None, deadline: float,
        bearer: bool = False,
    ) -> Answer:  # fmt: skip
        """One request ("METHOD TARGET") on a connected socket: with a challenge first when
        there is a token, and the answer's proof checked, so an impostor's is never believed;
        over TLS (bearer), the token as a header to the agent its certificate proved."""
        method, target = request.split(" ", 1)
        head = [f"{request} HTTP/1.1", f"Host: {host}", "Content-Length: 0"]
        if bearer and token is not None:
            head.append(f"{TOKEN_HEADER}: {token}")
        if token is None or bearer:
            sock.sendall(request_bytes([*head, "Connection: close"]))
            return receive(sock, deadline)
        from . import proof

        sock.sendall(request_bytes([f"GET {proof.CHALLENGE_PATH} HTTP/1.1",
                                     f"Host: {host}", "Content-Length: 0"]))  # fmt: skip
        issued = receive(sock, deadline)
        try:
            challenge = json.loads(issued.body)["challenge"] if issued.status == 200 else None
        except (ValueError, KeyError, TypeError):
            challenge = None
        if not (isinstance(challenge, str) and challenge.isascii() and challenge.isalnum()
                and len(challenge) <= 128):  # fmt: skip
            raise ValueError("no usable challenge")
        mine = proof.nonce()
        mac = proof.request_mac(token, challenge, mine, method, target)
        sock.sendall(request_bytes([*head, "Connection: close",
                                     f"{proof.AUTH_HEADER}: {challenge} {mine} {mac}"]))  # fmt: skip
        answer = receive(sock, deadline)
        expected = proof.answer_mac(
            token, mine, challenge, answer.status, answer.headers.get("content-type", ""),
            answer.headers.get(VERSION_HEADER.lower(), ""), answer.body,
        )  # fmt: skip
        if not proof.same(answer.headers.get(proof.PROOF_HEADER.lower(), ""), expected):
            raise _Unproven("its answer carries no valid proof: not the agent, or a wrong token")
        return answer

    def read(self, service: str, user: str, version: int | None = None) -> tuple[str | bytes, int]:
        """Return a secret (bytes if saved as bytes) and its version number."""
        query = [("service", service), ("user", user)]
        if version is not None:
            query.append(("version", str(version)))
        body, headers = self.request("GET", "/v1/secret", query)
        number = headers.get(VERSION_HEADER.lower(), "")
        kind = headers.get("content-type", "")
        if not digits(number):
            raise AgentUnavailable("the agent's answer has no valid version")
        if kind.startswith("application/octet-stream"):
            return body, int(number)
        try:
            return body.decode("utf-8"), int(number)
        except UnicodeDecodeError:
            raise AgentUnavailable("the agent's answer is not UTF-8 text") from None

    def export(self, service: str, tags: Mapping[str, str] | None = None) -> dict[str, str | bytes]:
        """Return every current secret of service (with all of tags), as export() does."""
        query = [("service", service), ("format", "json")]
        query += [("tag", f"{k}={v}") for k, v in (tags or {}).items()]
        body, _ = self.request("GET", "/v1/service", query)
        try:
            found = json.loads(body)
            return {user: _value(value) for user, value in found.items()}
        except (ValueError, TypeError, AttributeError, KeyError):
            raise AgentUnavailable("the agent's answer is not a service export") from None

    def refresh(self, service: str, user: str | None = None) -> None:
        """Drop what the agent holds of service (or of one of its users)."""
        query = [("service", service)] + ([("user", user)] if user is not None else [])
        self.request("POST", "/v1/refresh", query)

    def watch(
        self, service: str, since: str | None = None, timeout: float = 60.0
    ) -> tuple[str, bool]:
        """Wait up to timeout seconds for service to change since the token since; return the
        token now and whether it changed. Without since, the current token, at once."""
        query = [("service", service)]
        if since is not None:
            query += [("since", since), ("timeout", f"{timeout:g}")]
        body, _ = self.request("GET", "/v1/watch", query, wait=timeout if since else 0.0)
        try:
            found = json.loads(body)
            token, changed = found["token"], found["changed"]
            if not (isinstance(token, str) and token.isascii() and token.isalnum()):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise AgentUnavailable("the agent's answer is not a watch token") from None
        return token, changed is True

    def health(self) -> dict[str, str]:
        """The agent's /healthz answer, proven over TCP like any other: a wrong token or an
        impostor is AgentUnavailable here, not a healthy agent."""
        body, _ = self.request("GET", "/healthz", [])
        try:
            result = json.loads(body)
            if not isinstance(result, dict):
                raise TypeError
        except (ValueError, TypeError):
            raise AgentUnavailable("the agent's health answer is not JSON") from None
        return {str(k): str(v) for k, v in result.items()}


def _value(value: object) -> str | bytes:
    """One exported value: text, or {"base64": ...} for bytes; anything else is refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("base64"), str):
        return base64.b64decode(value["base64"], validate=True)
    raise TypeError("not a value")
