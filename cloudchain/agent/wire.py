"""The client's side of HTTP/1.1 with the agent: a request's bytes, and one answer read
strictly, whole, within a deadline. Anything off (a bad status line, a repeated header, a
missing, impossible or exceeded Content-Length) is a ValueError, never a guess, and a
silence or a drip past the deadline is a TimeoutError: the caller treats both as a dead agent.
Standard library only, like the rest of the fast path.
"""

from __future__ import annotations

import socket
import time

# The largest answer read: a whole service's export, with room for its headers.
MAX_ANSWER = 64 * 1024 * 1024
MAX_HEAD = 64 * 1024


class Answer:
    """One answer, parsed strictly: anything off is a ValueError, never a guess."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def receive(sock: socket.socket, deadline: float) -> Answer:
    """Read one whole answer before the deadline (for the whole answer, not each recv, so an
    agent dripping a byte at a time is abandoned as surely as a silent one)."""
    buffer = bytearray()

    def more() -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the agent took too long to answer")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("the agent took too long to answer") from None
        if not chunk:
            raise ValueError("the answer ended early")
        buffer.extend(chunk)

    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_HEAD:
            raise ValueError("the answer's head is too long")
        more()
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or not digits(code) or rest[3:4] not in ("", " "):
        raise ValueError("a malformed status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.lower()
        if not colon or name != name.strip() or name in headers:
            raise ValueError("a malformed or repeated header")
        headers[name] = value.strip()
    length = headers.get("content-length", "")
    if not digits(length) or int(length) > MAX_ANSWER:
        raise ValueError("a missing or impossible Content-Length")
    del buffer[: end + 4]
    while len(buffer) < int(length):
        more()
    if len(buffer) != int(length):
        raise ValueError("more than the Content-Length was sent")
    return Answer(int(code), headers, bytes(buffer))


def digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def request_bytes(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
