"""cchain-agent as a subprocess against a moto server, read by curl, and the cchain fast path."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from helpers import KEY_ALIAS
from support import BIN, Emulator, running_agent

from cloudchain import CloudChain

pytestmark = pytest.mark.e2e


def _chain(emulator: Emulator) -> CloudChain:
    return CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS)


@pytest.fixture
def seeded(emulator: Emulator) -> Emulator:
    chain = _chain(emulator)
    chain.save("billing", "alice", "hunter2")
    chain.save("billing", "alice", "hunter3")
    chain.save("billing", "cert", b"\x00\x01\xff")
    chain.save("web", "token", "t0k3n")
    return emulator


def test_curl_reads_through_the_unix_socket_and_the_socket_is_private(
    seeded: Emulator, tmp_path: Path
) -> None:
    with running_agent(seeded, tmp_path) as agent:
        path = Path(agent.socket_path)
        assert path == tmp_path / "run" / "cloudchain" / "agent.sock"
        assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        status, headers, body = agent.curl("/v1/secret?service=billing&user=alice")
        assert (status, body, headers["x-cloudchain-version"]) == (200, b"hunter3", "2")
        assert headers["content-type"] == "text/plain; charset=utf-8"
        status, _, body = agent.curl("/v1/secret?service=billing&user=alice&version=1")
        assert (status, body) == (200, b"hunter2")
        status, headers, body = agent.curl("/v1/secret?service=billing&user=cert")
        assert (status, body, headers["content-type"]) == (200, b"\x00\x01\xff",
                                                          "application/octet-stream")  # fmt: skip
        answers = {
            "missing": agent.curl("/v1/secret?service=billing&user=nobody"),
            "no user": agent.curl("/v1/secret?service=billing"),
            "bad version": agent.curl("/v1/secret?service=billing&user=alice&version=x"),
            "no path": agent.curl("/v1/nothing"),
            "wrong method": agent.curl("/v1/secret?service=billing&user=alice", "-X", "PUT"),
            "refresh by GET": agent.curl("/v1/refresh?service=billing"),
            "health": agent.curl("/healthz"),
            "long line": agent.curl("/v1/secret?service=" + "s" * 9000 + "&user=u"),
        }
        codes = {name: (status, json.loads(body).get("code") if body.startswith(b"{") else None)
                 for name, (status, _, body) in answers.items()}  # fmt: skip
        assert codes == {
            "missing": (404, "not_found"), "no user": (400, "bad_request"),
            "bad version": (400, "bad_request"), "no path": (404, "no_such_path"),
            "wrong method": (405, "method_not_allowed"),
            "refresh by GET": (405, "method_not_allowed"), "health": (200, None),
            "long line": (414, "too_long"),
        }  # fmt: skip
        assert json.loads(answers["health"][2]) == {"status": "ok"}
        exported = agent.curl("/v1/service?service=billing&format=json")[2]
        assert json.loads(exported) == {"alice": "hunter3", "cert": {"base64": "AAH/"}}
        direct = seeded.run("-e", "web", "--export", "--format", "dotenv").out.encode()
        assert agent.curl("/v1/service?service=web&format=dotenv")[2] == direct
        assert agent.stop() == 0
        assert not path.exists()  # SIGTERM removed the socket


def test_over_tcp_every_request_but_healthz_needs_the_token(
    seeded: Emulator, tmp_path: Path
) -> None:
    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0") as agent:
        assert agent.token is not None and len(agent.token) == 64
        token_file = Path(agent.env["CLOUDCHAIN_AGENT_TOKEN_FILE"])
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        read = "/v1/secret?service=billing&user=alice"
        assert agent.curl(read)[0] == 200
        refused = {
            "no token": agent.curl(read, token=None),
            "wrong token": agent.curl(read, token="0" * 64),
            "forwarded": agent.curl(read, "-H", "X-Forwarded-For: 10.0.0.1"),
            "forwarded too": agent.curl(read, "-H", "Forwarded: for=10.0.0.1"),
            "metrics": agent.curl("/metrics", token=None),
        }
        for name, (status, _, body) in refused.items():
            assert status == 403, name
            assert b"hunter" not in body and json.loads(body)["code"] == "forbidden"
        assert agent.curl("/healthz", token=None)[0] == 200
    bad = subprocess.run([str(BIN / "cchain-agent"), "--listen", "0.0.0.0:8080"],
                         capture_output=True, text=True, env=seeded.env, timeout=30)  # fmt: skip
    assert bad.returncode == 2 and "loopback" in bad.stderr


def test_ttl_refresh_and_writes_through_cchain(seeded: Emulator, tmp_path: Path) -> None:
    chain = _chain(seeded)
    # A TTL of 3 s: the save and the second read below take well under that even on a loaded
    # machine (at 1 s this failed under load, the entry expiring before the second read).
    with running_agent(seeded, tmp_path, "--ttl", "3") as agent:
        read = "/v1/secret?service=billing&user=alice"
        cached_at = time.monotonic()
        assert agent.curl(read)[2] == b"hunter3"
        chain.save("billing", "alice", "changed elsewhere")  # the agent is not told
        assert agent.curl(read)[2] == b"hunter3"  # cached
        time.sleep(max(0.0, cached_at + 3.2 - time.monotonic()))
        assert agent.curl(read)[2] == b"changed elsewhere"  # past its TTL
        chain.save("billing", "alice", "changed again")
        status, _, body = agent.curl("/v1/refresh?service=billing&user=alice", "-X", "POST")
        assert status == 200 and json.loads(body)["dropped"] >= 1
        assert agent.curl(read)[2] == b"changed again"
        # A save through cchain refreshes the agent itself: seen at once, whatever the TTL.
        saved = seeded.run("-u", "alice", "-e", "billing", "--save", "-", stdin="via cchain",
                           env=agent.env)  # fmt: skip
        assert saved.code == 0 and saved.err.count("warning") == 0, saved.err
        assert agent.curl(read)[2] == b"via cchain"


def test_prefetch_serves_without_waiting_and_refreshes_ahead(
    seeded: Emulator, tmp_path: Path
) -> None:
    port = int(seeded.url.rsplit(":", 1)[1])
    broken: list[bool] = []

    def policy(operation: str, count: int, body: bytes) -> str:
        return "hang" if broken else "forward"

    with FaultProxy(port, policy) as proxy, running_agent(
        seeded, tmp_path, "--prefetch", "billing", "--ttl", "1", "--stale-if-error", "60",
        "--read-timeout", "3", "--max-attempts", "1", endpoint=proxy.url,
    ) as agent:  # fmt: skip
        loaded = proxy.count("Query")
        assert loaded >= 1  # the service was loaded before the agent answered anything
        assert agent.curl("/v1/secret?service=billing&user=alice")[2] == b"hunter3"
        assert proxy.count("GetItem") == 0  # served from what prefetch loaded
        time.sleep(1.5)  # the refresh at half the TTL has run
        assert proxy.count("Query") > loaded
        broken.append(True)  # AWS now hangs: the refresher waits, reads do not
        time.sleep(1.5)
        started = time.monotonic()
        status, _, body = agent.curl("/v1/secret?service=billing&user=alice")
        assert (status, body) == (200, b"hunter3")
        assert time.monotonic() - started < 0.5
        metrics = agent.curl("/metrics")[2].decode()
        assert _metric(metrics, "cloudchain_agent_refreshes_total") >= 2
        assert _metric(metrics, "cloudchain_agent_stale_served_total") >= 1


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_stale_if_error_then_503_and_a_bounded_cache(seeded: Emulator, tmp_path: Path) -> None:
    port = int(seeded.url.rsplit(":", 1)[1])
    down: list[bool] = []

    def policy(operation: str, count: int, body: bytes) -> str:
        return "drop" if down else "forward"

    for stale, expected in (("60", (200, b"hunter3")), ("0", (503, None))):
        down.clear()
        with FaultProxy(port, policy) as proxy, running_agent(
            seeded, tmp_path, "--ttl", "1", "--stale-if-error", stale, "--max-attempts", "1",
            "--max-entries", "5", endpoint=proxy.url,
        ) as agent:  # fmt: skip
            read = "/v1/secret?service=billing&user=alice"
            assert agent.curl(read)[2] == b"hunter3"
            for n in range(20):  # misses are held briefly, and count toward the bound
                assert agent.curl(f"/v1/secret?service=billing&user=nobody{n}")[0] == 404
            metrics = agent.curl("/metrics")[2].decode()
            assert _metric(metrics, "cloudchain_agent_cached_entries") <= 5
            assert agent.curl(read)[2] == b"hunter3"  # refetched or held: AWS is still up
            down.append(True)
            time.sleep(1.2)
            status, _, body = agent.curl(read)
            if expected[0] == 200:
                assert (status, body) == expected
            else:
                assert status == 503 and json.loads(body)["code"] == "unavailable"
            log = agent.log.read_text()
        assert "hunter" not in log and "GET /v1/secret 200" in log


def test_no_value_in_the_log_even_with_debug(seeded: Emulator, tmp_path: Path) -> None:
    with running_agent(seeded, tmp_path, "--debug") as agent:
        for query in ("service=billing&user=alice", "service=billing&user=cert"):
            assert agent.curl(f"/v1/secret?{query}")[0] == 200
        agent.curl("/v1/service?service=web&format=env")
        agent.stop()
    log = agent.log.read_text()
    assert "GET /v1/secret 200" in log and "GET /v1/service 200" in log
    for value in ("hunter3", "t0k3n", "\x00\x01"):
        assert value not in log
    assert "service=billing" not in log  # not even the query


def test_one_agent_per_socket_and_a_stale_socket_is_replaced(
    seeded: Emulator, tmp_path: Path
) -> None:
    with running_agent(seeded, tmp_path) as agent:
        second = subprocess.run(
            [str(BIN / "cchain-agent")], capture_output=True, text=True, timeout=30,
            env={**seeded.env, "XDG_RUNTIME_DIR": str(tmp_path / "run")},
        )  # fmt: skip
        assert second.returncode == 1
        assert "another agent is already listening" in second.stderr
        assert agent.curl("/healthz")[0] == 200  # the first one is untouched
        path = agent.socket_path
        agent.process.kill()  # dies without cleaning up: its socket file stays
        agent.process.wait()
    assert Path(path).exists()
    with running_agent(seeded, tmp_path) as again:
        assert again.socket_path == path and again.curl("/healthz")[0] == 200


def test_fifty_clients_and_a_half_open_one(seeded: Emulator, tmp_path: Path) -> None:
    with running_agent(seeded, tmp_path) as agent:
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stuck.connect(agent.socket_path)
        stuck.sendall(b"GET /v1/secret?service=billing&user=alice HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(
                lambda n: agent.curl(f"/v1/secret?service=billing&user=alice&n={n % 1}"),
                range(50),
            ))  # fmt: skip
        assert {(status, body) for status, _, body in answers} == {(200, b"hunter3")}
        assert time.monotonic() - started < 15
        stuck.close()


# -- the fast path: cchain and readcreds through the agent -----------------------------------------

NO_BOTOCORE = """
import sys
{call}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore"))
assert not loaded, loaded
assert "cloudchain.chain" not in sys.modules
assert "ssl" not in sys.modules  # loaded only for an https:// agent
"""


def test_reads_through_the_agent_import_no_botocore(seeded: Emulator, tmp_path: Path) -> None:
    with running_agent(seeded, tmp_path) as agent:
        calls = {
            "read": "from cloudchain.cli import main\nassert main(['-u', 'alice', '-e', 'billing', '--read']) == 0",
            "export": "from cloudchain.cli import main\nassert main(['-e', 'billing', '--export']) == 0",
            "readcreds": "import cloudchain\nassert cloudchain.readcreds('billing', 'alice') == 'hunter3'",
            "resolve": "import os\nos.environ['REF'] = 'cchain://billing/alice'\nfrom cloudchain.cli import main\nassert main(['-e', 'web', '--resolve']) == 0",
        }  # fmt: skip
        for name, call in calls.items():
            proc = subprocess.run(
                [str(BIN / "python"), "-c", NO_BOTOCORE.format(call=call)],
                capture_output=True, text=True, env=agent.env, cwd=tmp_path,
            )  # fmt: skip
            assert proc.returncode == 0, (name, proc.stderr)
        misses = _metric(agent.curl("/metrics")[2].decode(), "cloudchain_agent_cache_misses_total")
        assert misses >= 2  # the agent really served them


def test_the_fast_path_exits_as_the_direct_path_does(seeded: Emulator, tmp_path: Path) -> None:
    commands = [
        ("-u", "alice", "-e", "billing", "--read"),
        ("-u", "cert", "-e", "billing", "--read"),
        ("-u", "nobody", "-e", "billing", "--read"),
        ("-u", "alice", "-e", "billing", "--read", "--secret-version", "9"),
        ("-e", "billing", "--export"),
        ("-e", "billing", "--export", "--format", "env"),
        ("-e", "web", "--exec", "--", "sh", "-c", "echo $TOKEN"),
    ]
    direct = [seeded.run(*argv) for argv in commands]
    with running_agent(seeded, tmp_path) as agent:
        through = [seeded.run(*argv, env=agent.env) for argv in commands]
        served = _metric(agent.curl("/metrics")[2].decode(), "cloudchain_agent_requests_total")
    assert served >= len(commands)
    for argv, a, b in zip(commands, direct, through, strict=True):
        assert (a.code, a.raw_out, a.err) == (b.code, b.raw_out, b.err), argv
    assert [r.code for r in through] == [0, 0, 3, 3, 0, 1, 0]  # env refuses the binary cert
    # The agent is gone: one warning, and the same answer from AWS.
    fallen = seeded.run("-u", "alice", "-e", "billing", "--read", env=agent.env)
    assert (fallen.code, fallen.out) == (0, "hunter3\n")
    (warning,) = fallen.err.splitlines()
    assert warning.startswith("cchain: warning: cannot reach the agent") and "directly" in warning
    bypass = seeded.run("-u", "alice", "-e", "billing", "--read", "--no-agent", env=agent.env)
    assert (bypass.code, bypass.err) == (0, "")


def test_doctor_checks_the_agent(seeded: Emulator, tmp_path: Path) -> None:
    with running_agent(seeded, tmp_path) as agent:
        healthy = seeded.run("--doctor", env=agent.env)
        assert f"ok    agent         {agent.address} is healthy" in healthy.out
    gone = seeded.run("--doctor", "--json", env=agent.env)
    (check,) = [r for r in json.loads(gone.out) if r["check"] == "agent"]
    assert check["status"] == "FAIL" and "cchain-agent" in check["fix"]
    assert gone.code == 1
