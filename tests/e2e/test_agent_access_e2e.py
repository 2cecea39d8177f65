"""cchain-agent's access file, end to end: two real uids on its unix socket, tokens and client
certificates over TLS, each client answered only within its scope, and the same refusal
whether or not the secret exists. Certificates are made here with `cryptography`."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from ssl import TLSVersion

import pytest
from certs import Authority
from support import Emulator, running_agent
from users import as_user, other_user

from cloudchain import CloudChain
from cloudchain.agent.access import token_hash
from cloudchain.agent.client import AgentClient, AgentUnavailable
from cloudchain.agent.server import HANDSHAKE_ADMITTED
from cloudchain.agent.tls import server_context

pytestmark = pytest.mark.e2e
NOBODY = 65534  # a uid and gid the access file does not name


@pytest.fixture
def seeded(emulator: Emulator) -> Emulator:
    chain = CloudChain(endpoint_url=emulator.url, keyalias="alias/test")
    chain.save("billing", "alice", "hunter3", tags={"env": "prod"})
    chain.save("billing", "bob", "b0b")
    chain.save("web", "token", "t0k3n")
    chain.save("web-admin", "root", "r00t")
    return emulator


def _curl(*args: str, uid: int | None = None, gid: int | None = None) -> tuple[int, bytes]:
    """curl's status and body (status 0: curl itself failed, as a refused handshake does)."""
    argv = ["curl", "-s", "--max-time", "20", "-w", "\n%{http_code}", *args]
    if uid is not None:
        argv = as_user(uid, gid if gid is not None else uid, *argv)
    out = subprocess.run(argv, capture_output=True, timeout=30).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code or 0), body


def test_two_local_users_on_the_socket_each_read_their_own_scope(
    seeded: Emulator, tmp_path: Path
) -> None:
    with other_user() as (uid, gid, _home):
        shared = Path(tempfile.mkdtemp(prefix="cchain-access-", dir="/tmp"))
        try:
            shared.chmod(0o755)
            access = tmp_path / "access.ini"
            access.write_text(
                f"[client app]\nuid = {uid}\nservices = billing, web\n\n"
                "[client ops]\nuid = 0\nservices = billing, web-*\ntags = env=prod\nmetrics = yes\n"
            )
            sock = shared / "run" / "agent.sock"
            with running_agent(seeded, tmp_path, "--listen", f"unix:{sock}",
                               "--access", str(access)) as agent:  # fmt: skip
                assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o711
                assert stat.S_IMODE(sock.stat().st_mode) == 0o666

                def read(query: str, who: int | None) -> tuple[int, bytes]:
                    url = f"http://localhost/{query if query == 'metrics' else 'v1/' + query}"
                    return _curl("--unix-socket", str(sock), url, uid=who, gid=who)

                app = {q: read(q, uid) for q in (
                    "secret?service=billing&user=alice", "secret?service=web&user=token",
                    "secret?service=web-admin&user=root", "secret?service=web-admin&user=nobody",
                    "secret?service=nosuch&user=x", "service?service=billing&format=json",
                    "service?service=web-admin&format=json", "watch?service=billing",
                    "watch?service=web-admin",
                )}  # fmt: skip
                assert app["secret?service=billing&user=alice"] == (200, b"hunter3")
                assert app["secret?service=web&user=token"] == (200, b"t0k3n")
                out_of_scope = [q for q in app if "web-admin" in q or "nosuch" in q]
                # One refusal, the same bytes, whether the secret exists or not.
                assert {app[q] for q in out_of_scope} == {
                    (403, b'{"error": "not in this client\'s scope", "code": "forbidden"}')
                }
                assert json.loads(app["watch?service=billing"][1])["service"] == "billing"
                listing = json.loads(app["service?service=billing&format=json"][1])
                assert listing == {"alice": "hunter3", "bob": "b0b"}

                # root's client is scoped by a tag: only tagged secrets, and a secret without
                # the tag is refused exactly as one that does not exist.
                ops = {q: read(q, None) for q in (
                    "secret?service=billing&user=alice", "secret?service=billing&user=bob",
                    "secret?service=billing&user=nobody", "secret?service=web&user=token",
                    "service?service=billing&format=json", "service?service=billing&tag=env=dev",
                    "watch?service=billing",
                )}  # fmt: skip
                assert ops["secret?service=billing&user=alice"] == (200, b"hunter3")
                assert json.loads(ops["service?service=billing&format=json"][1]) == {
                    "alice": "hunter3"
                }
                refused = [q for q in ops if "alice" not in q and "format=json" not in q]
                assert len({ops[q] for q in refused}) == 1
                assert ops[refused[0]][0] == 403

                # A uid the file does not name gets nothing.
                status, body = read("secret?service=billing&user=alice", NOBODY)
                assert status == 403 and b"hunter" not in body

                # cchain's own fast path as the other user reads through the agent.
                env = {"PATH": os.environ["PATH"], "CLOUDCHAIN_AGENT": f"unix:{sock}",
                       "HOME": "/tmp", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}  # fmt: skip
                code = (
                    "from cloudchain.agent.client import AgentClient as A;"
                    "c = A.from_environment(); print(c.read('web', 'token')[0])"
                )
                mine = subprocess.run(as_user(uid, gid, sys.executable, "-c", code), env=env,
                                      capture_output=True, text=True, timeout=30, cwd="/tmp")  # fmt: skip
                assert mine.stdout == "t0k3n\n", mine.stderr

                assert read("metrics", uid)[0] == 403  # app was not granted metrics
                metrics = read("metrics", None)[1].decode()
                assert 'cloudchain_agent_client_requests_total{client="app",status="200"}' in (
                    metrics
                )
                assert 'client="ops",status="403"' in metrics
            log = agent.log.read_text()
            assert "client=app" in log and "client=ops" in log and "hunter" not in log
        finally:
            subprocess.run(["rm", "-rf", str(shared)], check=False)


def test_tokens_and_certificates_over_tls(seeded: Emulator, tmp_path: Path) -> None:
    ca, wrong = Authority(tmp_path, "cluster"), Authority(tmp_path, "other")
    cert, key = ca.issue("agent", "agent.test", dns=("agent.test",), ips=("127.0.0.1",))
    client_cert, client_key = ca.issue("eso", "eso", org="platform", client=True)
    stray_cert, stray_key = wrong.issue("stray", "eso", org="platform", client=True)
    token, other = "a" * 40, "b" * 40
    access = tmp_path / "access.ini"
    access.write_text(
        f"[client eso]\ntoken_sha256 = {token_hash(token)}\nservices = billing\n"
        f"[client ci]\ntoken_sha256 = {token_hash(other)}\nservices = web*\n"
        "[client mesh]\nsubject = O=platform,CN=eso\nservices = web\n"
    )
    tls = ["--tls-cert", str(cert), "--tls-key", str(key), "--access", str(access)]
    with running_agent(seeded, tmp_path, "--listen", "0.0.0.0:0", *tls) as agent:
        port = agent.address.rsplit(":", 1)[1]
        assert agent.address.startswith("https://") and agent.token is None
        base = f"https://agent.test:{port}"
        pin = ["--cacert", str(ca.path), "--resolve", f"agent.test:{port}:127.0.0.1"]

        def get(path: str, *flags: str, token: str | None = token) -> tuple[int, bytes]:
            head = ["-H", f"X-Cloudchain-Token: {token}"] if token else []
            return _curl(*pin, *head, *flags, f"{base}{path}")

        assert get("/v1/secret?service=billing&user=alice") == (200, b"hunter3")
        listing = json.loads(get("/v1/service?service=billing&format=json")[1])
        assert listing == {"alice": "hunter3", "bob": "b0b"}
        refusals = {
            "exists": get("/v1/secret?service=web&user=token"),
            "missing": get("/v1/secret?service=web&user=nobody"),
            "no service": get("/v1/secret?service=nosuch&user=x"),
            "service": get("/v1/service?service=web"),
        }
        assert len(set(refusals.values())) == 1 and refusals["exists"][0] == 403
        assert get("/v1/secret?service=web-admin&user=root", token=other) == (200, b"r00t")
        assert get("/v1/secret?service=billing&user=alice", token="c" * 40)[0] == 403
        assert get("/v1/secret?service=billing&user=alice", token=None)[0] == 403
        # The Host must be a name the certificate was issued for: a rebinding page names its own.
        rebound = _curl(*pin, "-H", f"X-Cloudchain-Token: {token}", "-H", "Host: evil.example",
                        f"{base}/v1/secret?service=billing&user=alice")  # fmt: skip
        assert rebound[0] == 421
        # TLS 1.2 at least, whatever the system's OpenSSL defaults: a client that offers at
        # most 1.1 gets no handshake.
        assert server_context(str(cert), str(key), None).minimum_version == TLSVersion.TLSv1_2
        assert get("/healthz", "--tlsv1.0", "--tls-max", "1.1")[0] == 0
        assert get("/healthz", "--tlsv1.2", "--tls-max", "1.2")[0] == 200
        # A client that verifies the certificate against another CA refuses the agent.
        assert _curl("--cacert", str(wrong.path), "--resolve", f"agent.test:{port}:127.0.0.1",
                     f"{base}/healthz")[0] == 0  # fmt: skip
        # cchain's client: https, the CA from the environment, the token as a header.
        env = {"CLOUDCHAIN_AGENT": f"https://127.0.0.1:{port}", "CLOUDCHAIN_AGENT_CA": str(ca.path),
               "CLOUDCHAIN_AGENT_TOKEN": token}  # fmt: skip
        client = AgentClient.from_environment(env)
        assert client is not None and client.read("billing", "alice") == ("hunter3", 1)
        assert client.export("billing") == {"alice": "hunter3", "bob": "b0b"}
        with pytest.raises(AgentUnavailable):
            AgentClient.from_environment({**env, "CLOUDCHAIN_AGENT_CA": str(wrong.path)}).read(  # type: ignore[union-attr]
                "billing", "alice"
            )
    required = [*tls, "--tls-client-ca", str(ca.path), "--max-connections", "16"]
    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0", *required) as agent:
        base = agent.address
        if HANDSHAKE_ADMITTED:  # 3.11+: handshakes that never end count toward the cap
            port = int(base.rsplit(":", 1)[1])
            silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(120)]
            time.sleep(0.5)
            held = len(os.listdir(f"/proc/{agent.process.pid}/fd"))
            for sock in silent:
                sock.close()
            assert held < 80, held
        pin = ["--cacert", str(ca.path)]
        mine = ["--cert", str(client_cert), "--key", str(client_key)]
        read = f"{base}/v1/secret?service=web&user=token"
        assert _curl(*pin, *mine, read) == (200, b"t0k3n")  # named by its subject
        assert _curl(*pin, *mine, f"{base}/v1/secret?service=billing&user=alice")[0] == 403
        # Without a client certificate, or with one another CA signed: no handshake at all.
        assert _curl(*pin, "-H", f"X-Cloudchain-Token: {token}", read)[0] == 0
        assert _curl(*pin, "--cert", str(stray_cert), "--key", str(stray_key), read)[0] == 0
        env = {"CLOUDCHAIN_AGENT": base, "CLOUDCHAIN_AGENT_CA": str(ca.path),
               "CLOUDCHAIN_AGENT_CERT": str(client_cert), "CLOUDCHAIN_AGENT_KEY": str(client_key)}  # fmt: skip
        client = AgentClient.from_environment(env)
        assert client is not None and client.read("web", "token") == ("t0k3n", 1)
