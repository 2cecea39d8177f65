"""The agent's side of HTTP/1.1: read one request strictly, write one answer.

Strict because the agent guards secrets: a request has no body, so Transfer-Encoding, more
than one Content-Length, or any Content-Length but 0 is refused; every header line counts
toward the limit, repeated or not; a header name with white space before its colon, or a
folded line, is refused rather than guessed at. Whatever is refused closes the connection,
so nothing a refused request carried is ever read as a request of its own (smuggling).
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import NamedTuple
from urllib.parse import quote

from .._version import __version__
from .routes import Answer, Problem

PROG = "cchain-agent"
MAX_REQUEST_LINE = 8192  # the query string with it; longer is 414
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
CLIENT_TIMEOUT = 10.0  # a client silent this long is dropped
# A header name: RFC 9110's token characters.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Headers that must appear at most once: repeated, two readers could disagree on which counts.
_SINGLE = frozenset({"host", "content-length", "x-cloudchain-token", "x-cloudchain-auth"})


class Closed(Exception):
    """The client went away, timed out mid-request, or must not be read further: close."""


class Request(NamedTuple):
    method: str
    target: str
    version: str
    headers: dict[str, str]


async def _line(reader: asyncio.StreamReader, too_long: Problem) -> bytes:
    try:
        return await asyncio.wait_for(reader.readuntil(b"\n"), CLIENT_TIMEOUT)
    except asyncio.LimitOverrunError:
        raise too_long from None
    except asyncio.IncompleteReadError:  # the client left in the middle of a request
        raise Closed from None


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """Read a request line and its headers; None at a clean end of the connection."""
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\n"), CLIENT_TIMEOUT)
    except asyncio.IncompleteReadError as eof:
        if eof.partial:
            raise Closed from None
        return None
    except asyncio.LimitOverrunError:
        raise Problem(414, "too_long", "the request line is too long") from None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[0].isupper():
        raise Problem(400, "bad_request", "not an HTTP/1.x request line")
    headers: dict[str, str] = {}
    count = size = 0
    too_long = Problem(431, "too_long", "a header line is too long")
    while True:
        raw = await _line(reader, too_long)
        if raw in (b"\r\n", b"\n"):
            break
        count, size = count + 1, size + len(raw)
        if count > MAX_HEADERS or size > MAX_HEADER_BYTES:
            raise Problem(431, "too_long", f"more than {MAX_HEADERS} header lines or "
                          f"{MAX_HEADER_BYTES // 1024} KiB of headers")  # fmt: skip
        name, colon, value = raw.decode("latin-1").partition(":")
        if not colon or not name or not set(name) <= _TOKEN:
            raise Problem(400, "bad_request", "a malformed header line")
        name, value = name.lower(), value.strip()
        if name in headers:
            if name in _SINGLE:
                raise Problem(400, "bad_request", f"the {name} header is given more than once")
            value = f"{headers[name]}, {value}"
        headers[name] = value
    if "transfer-encoding" in headers:
        raise Problem(400, "bad_request", "requests have no body: Transfer-Encoding is refused")
    length = headers.get("content-length", "0")
    if not (length.isascii() and length.isdigit()):
        raise Problem(400, "bad_request", "a malformed Content-Length")
    if int(length):
        raise Problem(413, "bad_request", "requests have no body")
    return Request(parts[0], parts[1], parts[2], headers)


def host_names(socket_path: str | None, host: str, port: int) -> frozenset[str]:
    """The Host header values that name this agent: its loopback address (with its port, or
    none), or, on a unix socket, localhost or its path."""
    if socket_path is not None:
        return frozenset({"localhost", socket_path, quote(socket_path, safe="")})
    # Over TCP, not "localhost": a name the client resolves could reach another listener.
    bracketed = f"[{host}]" if ":" in host else host
    return frozenset({bracketed, f"{bracketed}:{port}"})


def response(status: int, answer: Answer, keep: bool) -> bytes:
    """One whole answer, head and body."""
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


def problem_answer(problem: Problem) -> Answer:
    """The JSON body of an error answer."""
    body = {"error": problem.args[0], "code": problem.code}
    if problem.hint:
        body["hint"] = problem.hint
    return Answer(json.dumps(body).encode(), "application/json", code=problem.code)
