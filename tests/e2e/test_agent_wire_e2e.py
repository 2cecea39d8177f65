"""The agent on the wire, end to end: the client never believes an impostor or a garbled
answer, and the server is not smuggled past, misdirected or flooded. Raw sockets on loopback,
real cchain-agent and cchain processes, a throwaway second user for the impostors."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import BIN, Emulator, free_port, running_agent, wait_for_text
from users import as_user, other_user

from cloudchain import CloudChain

pytestmark = pytest.mark.e2e
FAKE = Path(__file__).with_name("fake_agent.py")
READ = ("-u", "alice", "-e", "billing", "--read")


@pytest.fixture
def seeded(emulator: Emulator) -> Emulator:
    CloudChain(endpoint_url=emulator.url, keyalias="alias/test").save("billing", "alice", "real")
    return emulator


def _answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", *headers]
    if not any(h.lower().startswith("content-length") for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@contextlib.contextmanager
def fake_agent(
    listen: str, answer: bytes, folder: Path, *, user: tuple[int, int] | None = None,
    drip: float = 0.0,
) -> Iterator[Path]:  # fmt: skip
    """Run fake_agent.py (as user, if given); yield the file it records requests to."""
    answer_file, record, out = folder / "answer", folder / "record", folder / "fake.out"
    script = folder / "fake_agent.py"
    shutil.copy(FAKE, script)
    answer_file.write_bytes(answer)
    record.touch()
    for path, mode in ((script, 0o755), (answer_file, 0o644), (record, 0o666)):
        path.chmod(mode)  # readable (and the record writable) by the other user too
    argv = [sys.executable, str(script), listen, str(answer_file), str(record)]
    if drip:
        argv += ["--drip", str(drip)]
    if user:
        argv = as_user(*user, *argv)
    with out.open("wb") as stdout:
        process = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.STDOUT)
    try:
        wait_for_text(out, "ready", process)
        yield record
    finally:
        process.kill()
        process.wait()


def _one_warning_then_the_real_value(result) -> str:  # type: ignore[no-untyped-def]
    assert (result.code, result.out) == (0, "real\n"), result.err
    (warning,) = result.err.splitlines()
    assert warning.startswith("cchain: warning: ") and "directly" in warning
    assert "Traceback" not in result.err
    return warning


# -- 3. the client never talks to an impostor --------------------------------------------------


def test_a_unix_socket_of_another_user_is_refused_before_anything_is_sent(
    seeded: Emulator,
) -> None:
    with other_user() as (uid, gid, home):
        folder = home / "agent"
        folder.mkdir(mode=0o700)
        os.chown(folder, uid, gid)
        path = folder / "agent.sock"
        with fake_agent(f"unix:{path}", _answer(b"stolen", "X-Cloudchain-Version: 1",
                        "Content-Type: text/plain"), home, user=(uid, gid)) as record:  # fmt: skip
            folder.chmod(0o755)  # even where we may connect
            result = seeded.run(*READ, env={"CLOUDCHAIN_AGENT": f"unix:{path}"})
            warning = _one_warning_then_the_real_value(result)
            assert f"uid {uid}" in warning
            assert record.read_bytes() == b""  # refused before a byte was sent
            # An agent run as that user on purpose is trusted when named.
            named = seeded.run(*READ, env={"CLOUDCHAIN_AGENT": f"unix:{path}",
                                           "CLOUDCHAIN_AGENT_UID": str(uid)})  # fmt: skip
            assert named.out == "stolen\n"


def test_a_socket_swapped_into_our_directory_is_refused_by_its_peer_credentials(
    seeded: Emulator, tmp_path: Path
) -> None:
    with other_user() as (uid, gid, home):
        theirs = home / "agent.sock"
        with fake_agent(f"unix:{theirs}", _answer(b"stolen", "X-Cloudchain-Version: 1"),
                        home, user=(uid, gid)) as record:  # fmt: skip
            ours = tmp_path / "ours"
            ours.mkdir(mode=0o700)
            os.rename(theirs, ours / "agent.sock")  # every path check now passes...
            os.chown(ours / "agent.sock", 0, 0)
            result = seeded.run(*READ, env={"CLOUDCHAIN_AGENT": f"unix:{ours}/agent.sock"})
            warning = _one_warning_then_the_real_value(result)
            assert f"runs as uid {uid}" in warning  # ...but the peer is not us
            assert record.read_bytes() == b""


def test_a_tcp_impostor_learns_nothing_to_replay_and_is_not_believed(
    seeded: Emulator, tmp_path: Path
) -> None:
    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0") as agent:
        port = free_port()
        env = {**agent.env, "CLOUDCHAIN_AGENT": f"http://127.0.0.1:{port}"}
        stolen = _answer(b"stolen", "X-Cloudchain-Version: 7", "Content-Type: text/plain")
        with other_user() as (uid, gid, home), fake_agent(
            str(port), stolen, home, user=(uid, gid)
        ) as record:  # fmt: skip
            result = seeded.run(*READ, env=env)
            _one_warning_then_the_real_value(result)
            captured = record.read_bytes()
        assert agent.token is not None and agent.token.encode() not in captured
        assert b"X-Cloudchain-Auth:" in captured
        # Replay what the impostor captured to the real agent: on a fresh connection, and
        # after a fresh challenge of the real agent's own. Neither is served.
        request = captured.split(b"\r\n\r\n")[1] + b"\r\n\r\n"
        real = int(agent.address.rsplit(":", 1)[1])
        request = request.replace(f":{port}".encode(), f":{real}".encode())
        fresh = f"GET /v1/challenge HTTP/1.1\r\nHost: 127.0.0.1:{real}\r\n\r\n".encode()
        for warmup in (b"", fresh):
            with socket.create_connection(("127.0.0.1", real), timeout=10) as sock:
                sock.sendall(warmup + request)
                replies = _read_all(sock)
            assert b"real" not in replies and b"403 Forbidden" in replies


@pytest.mark.parametrize(
    "answer",
    [
        _answer(b"\xff\xfe", "X-Cloudchain-Version: 1", "Content-Type: text/plain"),
        _answer(b"real", "X-Cloudchain-Version: one", "Content-Type: text/plain"),
        _answer(b"real", "Content-Type: text/plain"),
        _answer(b"rea", "Content-Length: -1", "X-Cloudchain-Version: 1"),
        _answer(b"re", "Content-Length: 4", "X-Cloudchain-Version: 1"),
        _answer(b"{not json", "Content-Type: application/json", status="404 Not Found"),
        _answer(b'{"code": "not_found"}', "Content-Type: application/json", status="404 Not Found"),
        _answer(b"real", "X-Cloudchain-Version: 1", status="2OO OK"),
        b"garbage\r\n\r\n",
    ],
    ids=[
        "utf8",
        "version",
        "no-version",
        "negative-length",
        "short-body",
        "bad-json",
        "missing-field",
        "status",
        "no-http",
    ],
)
def test_a_garbled_answer_is_a_dead_agent(seeded: Emulator, tmp_path: Path, answer: bytes) -> None:
    folder = tmp_path / "fake"
    folder.mkdir(mode=0o700)
    with fake_agent(f"unix:{folder}/agent.sock", answer, tmp_path):
        result = seeded.run(*READ, env={"CLOUDCHAIN_AGENT": f"unix:{folder}/agent.sock"})
    _one_warning_then_the_real_value(result)


def test_an_agent_dripping_its_answer_is_abandoned_at_the_deadline(
    seeded: Emulator, tmp_path: Path
) -> None:
    folder = tmp_path / "fake"
    folder.mkdir(mode=0o700)
    slow = _answer(b"stolen", "X-Cloudchain-Version: 1", "Content-Type: text/plain")
    with fake_agent(f"unix:{folder}/agent.sock", slow, tmp_path, drip=0.5):
        started = time.monotonic()
        result = seeded.run(*READ, env={"CLOUDCHAIN_AGENT": f"unix:{folder}/agent.sock"})
        took = time.monotonic() - started
    warning = _one_warning_then_the_real_value(result)
    assert "too long" in warning and took < 15  # 5 s for the answer, not 5 s per byte


# -- 4. no smuggling, no misdirection, no flooding ---------------------------------------------


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_no_request_is_smuggled_past_a_refusal(seeded: Emulator, tmp_path: Path) -> None:
    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0") as agent:
        port = int(agent.address.rsplit(":", 1)[1])
        host = f"Host: 127.0.0.1:{port}\r\n"
        inner = (f"GET /v1/secret?service=billing&user=alice HTTP/1.1\r\n{host}"
                 f"X-Cloudchain-Token: {agent.token}\r\n\r\n").encode()  # fmt: skip
        forwarded = f"GET /healthz HTTP/1.1\r\n{host}X-Forwarded-For: 10.0.0.1\r\n".encode()
        attempts = {
            "chunked": forwarded
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(inner)
            + inner
            + b"\r\n0\r\n\r\n"
            + inner,
            "two lengths": forwarded
            + b"Content-Length: %d\r\nContent-Length: 0\r\n\r\n" % len(inner)
            + inner,
            "a body": forwarded + b"Content-Length: %d\r\n\r\n" % len(inner) + inner,
            "space before colon": forwarded + b"Transfer-Encoding : chunked\r\n\r\n" + inner,
            "101 lines": b"GET /healthz HTTP/1.1\r\n"
            + host.encode()
            + b"X-A: 1\r\n" * 100
            + b"\r\n"
            + inner,
        }
        for name, payload in attempts.items():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(payload)
                replies = _read_all(sock)  # the agent closed the connection: it ends
            assert replies.count(b"HTTP/1.1 ") == 1, (name, replies)
            assert b"real" not in replies and b"200 OK" not in replies, name
        assert b"431" in replies  # the 101 lines
        # The same inner request, alone, is served: the refusals above were not by chance.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(inner.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            assert _read_all(sock).endswith(b"real")


def test_the_host_must_name_the_agent(seeded: Emulator, tmp_path: Path) -> None:
    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0") as agent:
        read = "/v1/secret?service=billing&user=alice"
        port = agent.address.rsplit(":", 1)[1]
        for host, status in (("evil.example:" + port, 421), ("127.0.0.1:1", 421),
                             ("localhost:" + port, 421), ("127.0.0.1:" + port, 200)):  # fmt: skip
            assert agent.curl(read, "-H", f"Host: {host}")[0] == status, host
    with running_agent(seeded, tmp_path) as agent:
        assert agent.curl(read, "-H", "Host: rebound.example")[0] == 421
        assert agent.curl(read)[0] == 200


def test_a_flood_of_idle_connections_costs_the_flooder_not_the_readers(
    seeded: Emulator, tmp_path: Path
) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), max(hard, 4096)))
    out, log = tmp_path / "flood.out", tmp_path / "flood.log"
    env = {**seeded.env, "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    with out.open("wb") as stdout, log.open("wb") as stderr:
        process = subprocess.Popen([str(BIN / "cchain-agent"), "--listen", "127.0.0.1:0"],
                                   stdout=stdout, stderr=stderr, env=env,
                                   preexec_fn=low_limit)  # fmt: skip
    idle: list[socket.socket] = []
    try:
        text = wait_for_text(out, "CLOUDCHAIN_AGENT_TOKEN_FILE=", process)
        settings = dict(line.removeprefix("export ").split("=", 1) for line in text.splitlines())
        port = int(settings["CLOUDCHAIN_AGENT"].rsplit(":", 1)[1])
        reader = {**seeded.env, **settings}
        for _ in range(1100):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", port))
            idle.append(sock)
        time.sleep(1)
        started = time.monotonic()
        for _ in range(3):
            result = seeded.run(*READ, env=reader)
            assert (result.code, result.out, result.err) == (0, "real\n", "")
        assert time.monotonic() - started < 15
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-A: 1")  # then leaves
    finally:
        for sock in idle:
            sock.close()
        process.terminate()
        process.wait(15)
    logged = log.read_text()
    assert "Traceback" not in logged and len(logged) < 20_000, logged[-2000:]
    # One line per overload, not per connection: each "closing idle ones" after the first
    # follows a "back under the cap" (on a loaded machine the flood may outlast the idle
    # timeout, so the agent can go under the cap and over it again).
    events = [
        line for line in logged.splitlines() if "connection cap" in line or "idle ones" in line
    ]
    assert events and "closing idle ones" in events[0], logged[-2000:]
    overloads = [n for n, line in enumerate(events) if "closing idle ones" in line]
    assert all("back under" in events[n - 1] for n in overloads[1:]), events
    assert len(events) <= 5, events


def test_a_challenge_is_good_for_one_request_on_its_connection_for_ten_seconds(
    seeded: Emulator, tmp_path: Path
) -> None:
    from cloudchain.agent import proof

    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0") as agent:
        assert agent.token is not None
        port = int(agent.address.rsplit(":", 1)[1])
        target = "/v1/secret?service=billing&user=alice"

        def ask(sock: socket.socket) -> str:
            sock.sendall(f"GET /v1/challenge HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            return str(json.loads(_one(sock)[2])["challenge"])

        def signed(challenge: str, close: bool = False) -> bytes:
            mac = proof.request_mac(agent.token or "", challenge, "n0nce", "GET", target)
            return (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{proof.AUTH_HEADER}: "
                    f"{challenge} n0nce {mac}\r\n" + ("Connection: close\r\n" if close else "")
                    + "\r\n").encode()  # fmt: skip

        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            challenge = ask(sock)
            sock.sendall(signed(challenge))
            status, headers, body = _one(sock)
            assert (status, body) == (200, b"real")
            assert headers[proof.PROOF_HEADER.lower()] == proof.answer_mac(
                agent.token, "n0nce", challenge, 200, headers["content-type"], "1", b"real"
            )
            sock.sendall(signed(challenge))  # the same challenge again: used up
            assert _one(sock)[0] == 403
        with socket.create_connection(("127.0.0.1", port), timeout=10) as other:
            other.sendall(signed(challenge, close=True))  # another connection's challenge
            assert _one(other)[0] == 403
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            challenge = ask(sock)
            time.sleep(proof.CHALLENGE_SECONDS + 0.5)
            with contextlib.suppress(OSError):  # the agent may have dropped the idle client
                sock.sendall(signed(challenge))
            late = _read_all(sock)
            assert b"real" not in late and b"200 OK" not in late


def _one(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one answer (Content-Length framed) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_the_log_escapes_control_characters_from_a_request(
    seeded: Emulator, tmp_path: Path
) -> None:
    with running_agent(seeded, tmp_path) as agent:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(agent.socket_path)
            sock.sendall(b"GET /v1/\x1b[2J\x07forged\rGET/v1/secret/200 HTTP/1.1\r\n"
                         b"Host: localhost\r\nConnection: close\r\n\r\n")  # fmt: skip
            assert b"404" in _read_all(sock)
        agent.stop()
    logged = agent.log.read_text()
    assert "\x1b" not in logged and "\x07" not in logged and "\r" not in logged
    assert "/v1/\\x1b[2J\\x07forgedGET/v1/secret/200 404" in logged  # urlsplit drops the CR


def test_the_agent_removes_its_own_socket_and_nothing_that_took_its_place(
    seeded: Emulator, tmp_path: Path
) -> None:
    with running_agent(seeded, tmp_path) as agent:
        path = Path(agent.socket_path)
        path.unlink()
        path.write_text("someone else's")
        assert agent.stop() == 0
    assert path.read_text() == "someone else's"


# -- what an attack review of the above found ---------------------------------------------------


def test_a_token_file_another_user_could_have_written_proves_nothing(
    seeded: Emulator, tmp_path: Path
) -> None:
    """A planted token file (another user's, relative, a FIFO, readable by others) is never
    used: an impostor signing with a token it chose is not believed, and nothing hangs."""
    port = free_port()
    planted = "attackertoken0123456789abcdef"
    with other_user() as (uid, gid, home):
        theirs = home / "agent.token"
        theirs.write_text(planted)
        theirs.chmod(0o600)
        os.chown(theirs, uid, gid)
        fifo = home / "fifo.token"
        os.mkfifo(fifo)
        loose = tmp_path / "loose.token"
        loose.write_text(planted)
        loose.chmod(0o644)
        (tmp_path / "rel.token").write_text(planted)
        (tmp_path / "rel.token").chmod(0o600)
        started = time.monotonic()
        for token_file in (str(theirs), str(fifo), str(loose), "rel.token"):
            env = {"CLOUDCHAIN_AGENT": f"http://127.0.0.1:{port}",
                   "CLOUDCHAIN_AGENT_TOKEN_FILE": token_file}  # fmt: skip
            result = seeded.run(*READ, env=env, timeout=30)
            warning = _one_warning_then_the_real_value(result)
            assert "token" in warning, warning
        assert time.monotonic() - started < 60


def test_the_agent_prints_an_absolute_token_path_and_two_agents_keep_their_own(
    seeded: Emulator, tmp_path: Path
) -> None:
    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0") as first:
        first_file = Path(first.env["CLOUDCHAIN_AGENT_TOKEN_FILE"])
        assert first_file.is_absolute()
        second_dir = tmp_path / "second"
        second_dir.mkdir()
        with running_agent(seeded, second_dir, "--listen", "127.0.0.1:0") as second:
            assert Path(second.env["CLOUDCHAIN_AGENT_TOKEN_FILE"]) != first_file
            for agent in (first, second):
                result = seeded.run(*READ, env=agent.env)
                assert (result.code, result.out, result.err) == (0, "real\n", "")
        given = tmp_path / "given.token"
        given.write_text("g" * 32)
        given.chmod(0o600)
    assert not first_file.exists()  # removed at stop: it was the agent's own
    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0", "--token-file",
                       "given.token") as agent:  # fmt: skip
        assert agent.env["CLOUDCHAIN_AGENT_TOKEN_FILE"] == str(given)
    assert given.exists()  # a given file is never removed


def test_a_host_name_for_the_agent_is_refused_so_no_other_listener_is_reached(
    seeded: Emulator, tmp_path: Path
) -> None:
    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0") as agent:
        named = agent.address.replace("127.0.0.1", "localhost")
        result = seeded.run(*READ, env={**agent.env, "CLOUDCHAIN_AGENT": named})
        assert "loopback address" in _one_warning_then_the_real_value(result)


def test_clients_that_never_read_their_answers_cannot_hold_every_slot(
    seeded: Emulator, tmp_path: Path
) -> None:
    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0",
                       "--max-connections", "2") as agent:  # fmt: skip
        port = int(agent.address.rsplit(":", 1)[1])
        pipelined = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode() * 4000
        stuck = []
        for _ in range(3):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.sendall(pipelined)
            stuck.append(sock)
        time.sleep(1)
        started = time.monotonic()
        result = seeded.run(*READ, env=agent.env)
        assert (result.code, result.out, result.err) == (0, "real\n", "")
        assert time.monotonic() - started < 10
        for sock in stuck:
            sock.close()
        agent.stop()
    assert len(agent.log.read_text().splitlines()) < 200  # healthz lines are not logged


def test_odd_digits_are_a_bad_request_not_an_unhandled_error(
    seeded: Emulator, tmp_path: Path
) -> None:
    with running_agent(seeded, tmp_path) as agent:
        for head in ("GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: \u00b2\r\n",
                     "GET /v1/secret?service=billing&user=alice&version=%C2%B2 HTTP/1.1\r\n"
                     "Host: localhost\r\n"):  # fmt: skip
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(agent.socket_path)
                sock.sendall((head + "Connection: close\r\n\r\n").encode())
                assert b"400 Bad Request" in _read_all(sock)
        agent.stop()
    logged = agent.log.read_text()
    assert "nhandled" not in logged and "Traceback" not in logged


def test_a_listen_path_through_another_users_link_is_refused_and_nothing_made(
    seeded: Emulator, tmp_path: Path
) -> None:
    with other_user() as (uid, gid, home):
        theirs = home / "dir"
        theirs.mkdir()
        os.chown(theirs, uid, gid)
        link = Path(tempfile.mkdtemp(dir="/tmp")) / "link"
        try:
            link.parent.chmod(0o1777)  # a shared, sticky directory, as /tmp is
            subprocess.run(as_user(uid, gid, "ln", "-s", str(theirs), str(link)), check=True)
            started = subprocess.run(
                [str(BIN / "cchain-agent"), "--listen", f"unix:{link}/sock/agent.sock"],
                capture_output=True, text=True, timeout=30, env=seeded.env,
            )  # fmt: skip
            assert started.returncode == 1 and f"belongs to uid {uid}" in started.stderr
            assert "chmod" not in started.stderr
            assert list(theirs.iterdir()) == []  # nothing made inside their directory
            shared = subprocess.run(
                [str(BIN / "cchain-agent"), "--listen", f"unix:{link.parent}/agent.sock"],
                capture_output=True, text=True, timeout=30, env=seeded.env,
            )  # fmt: skip
            assert shared.returncode == 1 and "chmod" not in shared.stderr
        finally:
            shutil.rmtree(link.parent)
