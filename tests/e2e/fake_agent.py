"""An impostor (or a broken agent) for the client's trust tests: a test utility only.

    python fake_agent.py LISTEN ANSWER RECORD [--drip S]

LISTEN is unix:PATH or a TCP port on 127.0.0.1. For every request it reads (recording the raw
bytes to RECORD), it answers /v1/challenge with a challenge of its own, as an impostor that
knows the protocol would, and anything else with the bytes of the file ANSWER, all at once or,
with --drip S, one byte every S seconds. It prints "ready" once it listens.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time


def _serve(conn: socket.socket, answer: bytes, record: str, drip: float) -> None:
    with conn:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            with open(record, "ab") as out:
                out.write(head + b"\r\n\r\n")
            if b" /v1/challenge " in head.split(b"\r\n", 1)[0]:
                body = b'{"challenge": "' + os.urandom(32).hex().encode() + b'"}'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
                continue
            if drip:
                for byte in answer:
                    conn.sendall(bytes([byte]))
                    time.sleep(drip)
            else:
                conn.sendall(answer)
            return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("listen")
    parser.add_argument("answer")
    parser.add_argument("record")
    parser.add_argument("--drip", type=float, default=0.0)
    args = parser.parse_args()
    with open(args.answer, "rb") as handle:
        answer = handle.read()
    if args.listen.startswith("unix:"):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(args.listen[len("unix:") :])
    else:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", int(args.listen)))
    server.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(
            target=_serve, args=(conn, answer, args.record, args.drip), daemon=True
        ).start()


if __name__ == "__main__":
    main()
