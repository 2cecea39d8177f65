"""cchain-agent trust, end to end: what it serves after a delete, its token rule, and the
socket directory it will (and will not) use. Real cchain-agent and cchain processes against a
moto server; the two-user cases run a throwaway user made here."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from support import BIN, Emulator, running_agent
from users import other_user

from cloudchain import CloudChain

pytestmark = pytest.mark.e2e


@pytest.fixture
def seeded(emulator: Emulator) -> Emulator:
    chain = CloudChain(endpoint_url=emulator.url, keyalias="alias/test")
    chain.save("billing", "alice", "hunter3")
    chain.save("billing", "bob", "b0b")
    return emulator


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def _wait_for_reload(agent, after: float, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = agent.curl("/metrics")[2].decode()
        if _metric(text, "cloudchain_agent_refreshes_total") > after:
            return
        time.sleep(0.1)
    raise AssertionError("the prefetched service was not reloaded")


def _refreshes(agent) -> float:  # type: ignore[no-untyped-def]
    return _metric(agent.curl("/metrics")[2].decode(), "cloudchain_agent_refreshes_total")


# -- 1. a deleted secret stops being served ---------------------------------------------------


def test_a_secret_deleted_elsewhere_is_404_after_the_next_reload(
    seeded: Emulator, tmp_path: Path
) -> None:
    with running_agent(seeded, tmp_path, "--prefetch", "billing", "--ttl", "2") as agent:
        read = "/v1/secret?service=billing&user=alice"
        assert agent.curl(read)[:3:2] == (200, b"hunter3")
        deleted = seeded.run("-u", "alice", "-e", "billing", "--delete", "--no-agent")
        assert deleted.code == 0, deleted.err
        _wait_for_reload(agent, _refreshes(agent))
        listing = json.loads(agent.curl("/v1/service?service=billing")[2])
        assert list(listing) == ["bob"]
        status, _, body = agent.curl(read)
        assert (status, json.loads(body)["code"]) == (404, "not_found")
        assert agent.curl("/v1/secret?service=billing&user=bob")[2] == b"b0b"


@pytest.mark.parametrize(("fault", "served"), [("denied", 502), ("disabled", 502), ("drop", 200)])
def test_stale_only_while_aws_fails_never_after_a_refusal(
    seeded: Emulator, tmp_path: Path, fault: str, served: int
) -> None:
    port = int(seeded.url.rsplit(":", 1)[1])
    failing: list[bool] = []

    def policy(operation: str, count: int, body: bytes) -> str:
        return fault if failing and operation in ("Query", "Decrypt", "GetItem") else "forward"

    with FaultProxy(port, policy) as proxy, running_agent(
        seeded, tmp_path, "--prefetch", "billing", "--ttl", "2", "--max-attempts", "1",
        endpoint=proxy.url,
    ) as agent:  # fmt: skip
        read = "/v1/secret?service=billing&user=alice"
        assert agent.curl(read)[:3:2] == (200, b"hunter3")
        failing.append(True)
        time.sleep(2.5)  # reloads have failed, and the TTL of the last good one has passed
        assert _metric(agent.curl("/metrics")[2].decode(), "cloudchain_agent_aws_errors") >= 1
        status, _, body = agent.curl(read)
        assert status == served, body
        if served == 200:
            assert body == b"hunter3"  # AWS unreachable: the stale value, as promised
        else:
            assert b"hunter" not in body
            assert json.loads(body)["code"] in ("access_denied", "config")


def test_misses_never_evict_a_prefetched_service(seeded: Emulator, tmp_path: Path) -> None:
    port = int(seeded.url.rsplit(":", 1)[1])
    with FaultProxy(port, lambda op, n, body: "forward") as proxy, running_agent(
        seeded, tmp_path, "--prefetch", "billing", "--max-entries", "5", endpoint=proxy.url,
    ) as agent:  # fmt: skip
        for n in range(10):
            assert agent.curl(f"/v1/secret?service=billing&user=nobody{n}")[0] == 404
        looked_up = proxy.count("GetItem")
        assert agent.curl("/v1/secret?service=billing&user=alice")[2] == b"hunter3"
        assert agent.curl("/v1/secret?service=billing&user=bob")[2] == b"b0b"
        assert proxy.count("GetItem") == looked_up  # still pinned: no trip to AWS
        metrics = agent.curl("/metrics")[2].decode()
        # the five lookups the bound allows, plus the pinned service and its two secrets
        assert _metric(metrics, "cloudchain_agent_cached_entries") == 5 + 3


# -- 2. authentication never fails open --------------------------------------------------------


def _start(seeded: Emulator, tmp_path: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [str(BIN / "cchain-agent"), "--listen", "127.0.0.1:0", *args],
        capture_output=True, text=True, timeout=30,
        env={**seeded.env, "XDG_RUNTIME_DIR": str(tmp_path / "run"), **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize(
    "token", [" ", "\n", "", "x", "0123456789abcde", "0123456789 abcdef0", "0123456789abcdé0"]
)
def test_a_blank_short_or_odd_token_is_refused_at_start(
    seeded: Emulator, tmp_path: Path, token: str
) -> None:
    started = _start(seeded, tmp_path, env={"CLOUDCHAIN_AGENT_TOKEN": token})
    assert started.returncode == 1, started.stderr
    first, *rest = started.stderr.splitlines()
    assert first.startswith("cchain-agent: error: the agent token from CLOUDCHAIN_AGENT_TOKEN")
    assert len(rest) <= 1 and "Traceback" not in started.stderr
    if len(token.strip()) > 8:
        assert token.strip() not in started.stderr  # never echoed


def test_a_token_file_others_can_read_is_refused_unless_allowed(
    seeded: Emulator, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("a" * 32 + "\n")
    token_file.chmod(0o644)
    loose = _start(seeded, tmp_path, "--token-file", str(token_file))
    assert loose.returncode == 1
    assert "readable by group or others (mode 0644)" in loose.stderr.splitlines()[0]
    token_file.chmod(0o600)
    short = tmp_path / "short"
    short.write_text("a" * 15)
    short.chmod(0o600)
    assert _start(seeded, tmp_path, "--token-file", str(short)).returncode == 1
    token_file.chmod(0o640)
    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0", "--token-file",
                       str(token_file), "--allow-loose-token-file") as agent:  # fmt: skip
        assert agent.curl("/v1/secret?service=billing&user=alice", token="a" * 32)[0] == 200
    warning = agent.log.read_text()
    assert "readable by group or others" in warning and "a" * 32 not in warning


def test_a_generated_token_is_32_random_bytes_in_a_private_file(
    seeded: Emulator, tmp_path: Path
) -> None:
    tokens = []
    for _ in range(2):
        with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0") as agent:
            assert agent.token is not None and len(bytes.fromhex(agent.token)) == 32
            path = Path(agent.env["CLOUDCHAIN_AGENT_TOKEN_FILE"])
            assert stat.S_IMODE(path.lstat().st_mode) == 0o600 and path.is_file()
            tokens.append(agent.token)
    assert tokens[0] != tokens[1]


def test_doctor_fails_a_wrong_token_with_the_fix(seeded: Emulator, tmp_path: Path) -> None:
    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0") as agent:
        right = seeded.run("--doctor", "--json", env=agent.env)
        (ok,) = [r for r in json.loads(right.out) if r["check"] == "agent"]
        assert ok["status"] == "ok", ok
        wrong = tmp_path / "wrong"
        wrong.write_text("b" * 64)
        env = {**agent.env, "CLOUDCHAIN_AGENT_TOKEN_FILE": str(wrong)}
        checked = seeded.run("--doctor", "--json", env=env)
    (check,) = [r for r in json.loads(checked.out) if r["check"] == "agent"]
    assert check["status"] == "FAIL" and checked.code == 1
    assert "token" in check["fix"] and "b" * 64 not in checked.out


# -- 5. the socket path is the agent's, and only the agent's -----------------------------------


def _listen(seeded: Emulator, tmp_path: Path, where: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "cchain-agent"), "--listen", where], capture_output=True, text=True,
        timeout=30, env={**seeded.env, "XDG_RUNTIME_DIR": str(tmp_path / "run")},
    )  # fmt: skip


def test_the_agent_never_follows_chmods_or_replaces_what_it_did_not_make(
    seeded: Emulator, tmp_path: Path
) -> None:
    victim = tmp_path / "victim-config"
    victim.mkdir(mode=0o755)
    victim.chmod(0o755)
    link = tmp_path / "planted"
    link.symlink_to(victim)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    notes = tmp_path / "mine"
    notes.mkdir(mode=0o700)
    (notes / "agent.sock").write_text("not a socket")
    cases = {
        "link": _listen(seeded, tmp_path, f"unix:{link}/agent.sock"),
        "sticky": _listen(seeded, tmp_path, f"unix:{shared}/agent.sock"),
        "file": _listen(seeded, tmp_path, f"unix:{notes}/agent.sock"),
    }
    for name, started in cases.items():
        assert started.returncode == 1, (name, started.stderr)
        assert len(started.stderr.splitlines()) <= 2 and "Traceback" not in started.stderr
    assert "symbolic link" in cases["link"].stderr
    assert "mode 1777" in cases["sticky"].stderr
    assert "not a socket" in cases["file"].stderr
    assert stat.S_IMODE(victim.stat().st_mode) == 0o755  # never chmodded through the link
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # kept its sticky bit
    assert (notes / "agent.sock").read_text() == "not a socket"  # never deleted
    before = stat.S_IMODE(os.stat(tmp_path).st_mode)
    empty = subprocess.run([str(BIN / "cchain-agent"), "--listen", "unix:"], cwd=tmp_path,
                           capture_output=True, text=True, env=seeded.env, timeout=30)  # fmt: skip
    assert empty.returncode == 2 and "needs a path" in empty.stderr
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == before


def test_a_directory_of_another_user_is_refused(seeded: Emulator, tmp_path: Path) -> None:
    with other_user() as (uid, gid, home):
        theirs = home / "sockets"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, uid, gid)
        started = _listen(seeded, tmp_path, f"unix:{theirs}/agent.sock")
        assert started.returncode == 1 and f"belongs to uid {uid}" in started.stderr
        assert stat.S_IMODE(theirs.stat().st_mode) == 0o700 and theirs.stat().st_uid == uid
        assert not (theirs / "agent.sock").exists()
