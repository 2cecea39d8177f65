"""Challenge-response over TCP: each side proves it holds the token without ever sending it.

1. The client asks `GET /v1/challenge` on a connection; the agent answers a fresh random
   challenge, good for one request on that same connection for CHALLENGE_SECONDS.
2. The client sends its request with `X-Cloudchain-Auth: <challenge> <nonce> <mac>`, where
   the mac is HMAC-SHA256(token) over the challenge, its own random nonce and the request.
3. The agent answers with `X-Cloudchain-Proof: <mac>`, an HMAC over the client's nonce, the
   challenge and the answer (status, type, version and a digest of the body).

An impostor listening where the agent should be can only hand out challenges of its own, so
all it learns are macs over challenges the real agent never issued: nothing it can replay. It
cannot forge the proof, so the client believes none of its answers. A live relay to a real
agent listening somewhere else is beyond this: a unix socket (peer credentials) is the answer
to that. The two labels keep a request mac from ever passing for an answer's, or back.
"""

from __future__ import annotations

import hashlib
import hmac
import os

CHALLENGE_PATH = "/v1/challenge"
AUTH_HEADER = "X-Cloudchain-Auth"
PROOF_HEADER = "X-Cloudchain-Proof"
CHALLENGE_SECONDS = 10.0
_NONCE_BYTES = 32


def nonce() -> str:
    """A fresh random challenge or nonce, as hex."""
    return os.urandom(_NONCE_BYTES).hex()


def _mac(token: str, *fields: str) -> str:
    message = "\n".join(fields).encode("utf-8", "surrogateescape")
    return hmac.new(token.encode("utf-8"), message, hashlib.sha256).hexdigest()


def request_mac(token: str, challenge: str, client_nonce: str, method: str, target: str) -> str:
    """The client's mac over one request."""
    return _mac(token, "cloudchain-agent-request-v1", challenge, client_nonce, method, target)


def answer_mac(
    token: str,
    client_nonce: str,
    challenge: str,
    status: int,
    content_type: str,
    version: str,
    body: bytes,
) -> str:
    """The agent's mac over its answer to one authenticated request."""
    digest = hashlib.sha256(body).hexdigest()
    return _mac(token, "cloudchain-agent-answer-v1", client_nonce, challenge, str(status),
                content_type, version, digest)  # fmt: skip


def same(a: str, b: str) -> bool:
    """Compare two macs (or tokens) in constant time."""
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"),
                               b.encode("utf-8", "surrogateescape"))  # fmt: skip
