"""The agent's access file and scopes, in-process: what the file may say, what each client may
read, that a refusal comes before any AWS call, and the flags that go (or do not go) with it."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from urllib.parse import urlencode

import pytest
from helpers import CallCounter

from cloudchain import CloudChain
from cloudchain.agent import main as agent_main
from cloudchain.agent.access import Access, guard, load_access, token_hash
from cloudchain.agent.cached import CachedSecrets
from cloudchain.agent.connections import Connection
from cloudchain.agent.listen import Address, bind_unix
from cloudchain.agent.protocol import Request, problem_answer
from cloudchain.agent.routes import Agent, Problem
from cloudchain.agent.server import AgentServer
from cloudchain.agent.tls import certificate_names, host_names
from cloudchain.errors import CloudChainConfigError

FORBIDDEN = b'{"error": "not in this client\'s scope", "code": "forbidden"}'


def _file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "access.ini"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_an_access_file_names_clients_four_ways(tmp_path: Path) -> None:
    path = _file(tmp_path, (
        f"# who may read what\n[client web]\ntoken_sha256 = {token_hash('t' * 32)}\n"
        "services = web, web-*  ; globs\ntags = env=prod, team = pay\n"
        "[client deploy]\nuid = root\nservices = *\n"
        "[client ops]\ngid = 4242\nservices =\n"
        "[client eso]\nsubject = CN=eso,O=platform\nservices = billing\n"
    ))  # fmt: skip
    access = load_access(path)
    web = access.by_token("t" * 32)
    assert web is not None and web.name == "web" and web.tags == {"env": "prod", "team": "pay"}
    assert web.allows("web") and web.allows("web-admin") and not web.allows("webx")
    assert access.by_token("t" * 31) is None
    assert access.by_peer(0, 99).name == "deploy"  # type: ignore[union-attr]
    ops = access.by_peer(1000, 4242)
    assert ops is not None and not ops.allows("anything")  # empty services: nothing
    assert access.by_peer(1000, 1000) is None
    assert access.by_subject("CN=eso,O=platform").name == "eso"  # type: ignore[union-attr]
    assert access.local


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[web]\nuid = 1\nservices = a\n", "is not [client NAME]"),
        ("[client a]\nuid = 1\nservices = a\nscope = b\n", "unknown key 'scope'"),
        ("[client a]\nservices = a\n", "exactly one of"),
        ("[client a]\nuid = 1\ngid = 1\nservices = a\n", "exactly one of"),
        ("[client a]\nuid = 1\n", "has no services"),
        ("[client a]\ntoken_sha256 = abc\nservices = a\n", "64 hex digits"),
        ("[client a]\nuid = 1\nservices = a\n[client b]\nuid = 1\nservices = b\n", "same uid"),
        ("[client a]\nuid = no-such-user-here\nservices = a\n", "no such user"),
        ("[client a]\nuid = 1\nservices = a\ntags = env\n", "KEY=VALUE"),
        ("uid = 1\n", "not an INI file"),
        # configparser's [DEFAULT] would lend its keys to every client: a client that forgot
        # its services would silently read everything
        ("[DEFAULT]\nservices = *\n[client a]\nuid = 1\n", "[DEFAULT] is not [client NAME]"),
    ],
)
def test_a_wrong_access_file_is_one_line_naming_it(tmp_path: Path, text: str, says: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(CloudChainConfigError) as caught:
        load_access(path)
    assert says in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_wrong_access_file_stops_the_agent_at_start_with_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _file(tmp_path, "[client a]\nuid = 1\n")
    assert agent_main.main(["--access", str(path), "--listen", "unix:/nonexistent/a.sock"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"cchain-agent: error: --access {path}: [client a] has no services (names "
                   "or globs, or empty)"]  # fmt: skip


def test_an_access_file_others_may_change_is_refused(tmp_path: Path) -> None:
    path = _file(tmp_path, "[client a]\nuid = 1\nservices = a\n", mode=0o664)
    with pytest.raises(CloudChainConfigError, match="writable by group or others"):
        load_access(path)
    os.chown(path, 4321, 4321)
    path.chmod(0o644)
    with pytest.raises(CloudChainConfigError, match="owned by uid 4321"):
        load_access(path)
    # A link another user owns picks the file: a root-owned old copy with wider scopes, say.
    os.chown(path, 0, 0)
    old = _file(tmp_path, "[client a]\nuid = 1\nservices = *\n")
    (tmp_path / "conf").symlink_to(tmp_path)
    os.lchown(tmp_path / "conf", 4321, 4321)
    with pytest.raises(CloudChainConfigError, match="symbolic link another user owns"):
        load_access(tmp_path / "conf" / "access.ini")
    os.lchown(tmp_path / "conf", 0, 0)  # root's own link (a ConfigMap's ..data): fine
    assert load_access(tmp_path / "conf" / old.name).uids[1].services == ("*",)


def test_scope_is_decided_from_the_query_alone(tmp_path: Path) -> None:
    access = load_access(_file(tmp_path, (
        "[client app]\nuid = 1\nservices = billing\n"
        "[client tagged]\nuid = 2\nservices = billing\ntags = env=prod\n"
        "[client prometheus]\nuid = 3\nservices =\nmetrics = yes\n"
    )))  # fmt: skip
    app, tagged = access.by_peer(1, 1), access.by_peer(2, 2)
    for path in ("/v1/secret", "/v1/service", "/v1/refresh", "/v1/watch"):
        with pytest.raises(Problem) as refused:
            guard(app, path, {"service": ["web"], "user": ["x"]})
        assert problem_answer(refused.value).body == FORBIDDEN
    with pytest.raises(Problem):  # a second service out of scope spoils the request
        guard(app, "/v1/service", {"service": ["billing", "web"]})
    with pytest.raises(Problem):  # a path not scoped yet answers nobody
        guard(app, "/v1/newer", {"service": ["billing"]})
    assert guard(app, "/v1/watch", {"service": ["billing"]}) == {"service": ["billing"]}
    with pytest.raises(Problem, match="no access entry"):
        guard(None, "/v1/secret", {"service": ["billing"]})
    # /metrics tells of changes, decrypts and clients beyond any one scope: granted by name.
    with pytest.raises(Problem) as refused:
        guard(app, "/metrics", {})
    assert problem_answer(refused.value).body == FORBIDDEN
    assert guard(access.by_peer(3, 3), "/metrics", {}) == {}
    # A tagged client's listing asks for its tags; asking for other values of them is refused,
    # and so is a refresh (its count would tell of untagged secrets).
    assert guard(tagged, "/v1/service", {"service": ["billing"], "tag": ["team=a"]})["tag"] == [
        "team=a", "env=prod",
    ]  # fmt: skip
    for path, params in (
        ("/v1/service", {"tag": ["env=dev"]}), ("/v1/refresh", {}), ("/v1/watch", {}),
    ):  # fmt: skip
        with pytest.raises(Problem):
            guard(tagged, path, {"service": ["billing"], **params})


def _server(chain: CloudChain, access: Access) -> AgentServer:
    cached = CachedSecrets(chain, ttl=60, stale_if_error=0, max_entries=10, prefetch=[])
    return AgentServer(Agent(cached, None), 2, Address(host="127.0.0.1", port=1), 10, access)


def _ask(server: AgentServer, client_uid: int, path: str, **query: str) -> tuple[int, bytes]:
    client = server.access.by_peer(client_uid, client_uid)  # type: ignore[union-attr]
    route = server.agent.routes()[path]
    try:
        answer = asyncio.run(server._route(route, path, urlencode(query), Connection(None), client))  # type: ignore[arg-type]
    except Problem as problem:
        return problem.status, problem_answer(problem).body
    return 200, answer.body


def test_a_refusal_is_the_same_and_asks_aws_nothing(chain: CloudChain, tmp_path: Path) -> None:
    chain.save("billing", "alice", "hunter3", tags={"env": "prod"})
    chain.save("billing", "bob", "b0b")
    chain.save("web", "token", "t0k3n")
    access = load_access(_file(tmp_path, (
        "[client app]\nuid = 1\nservices = billing\n"
        "[client tagged]\nuid = 2\nservices = billing\ntags = env=prod\n"
    )))  # fmt: skip
    server = _server(chain, access)
    calls = CallCounter(chain._dynamodb, chain._kms)
    for user in ("token", "nobody"):
        assert _ask(server, 1, "/v1/secret", service="web", user=user) == (403, FORBIDDEN)
    assert _ask(server, 1, "/v1/service", service="web") == (403, FORBIDDEN)
    assert calls.count() == 0  # decided before any lookup: no timing tells existence
    assert _ask(server, 1, "/v1/secret", service="billing", user="bob") == (200, b"b0b")
    assert _ask(server, 1, "/v1/secret", service="billing", user="nobody")[0] == 404
    # A tagged client: untagged and missing secrets are one refusal.
    assert _ask(server, 2, "/v1/secret", service="billing", user="alice") == (200, b"hunter3")
    assert _ask(server, 2, "/v1/secret", service="billing", user="bob") == (403, FORBIDDEN)
    assert _ask(server, 2, "/v1/secret", service="billing", user="nobody") == (403, FORBIDDEN)
    status, body = _ask(server, 2, "/v1/service", service="billing")
    assert (status, json.loads(body)) == (200, {"alice": "hunter3"})
    server.pool.shutdown()


def test_tls_host_names_are_the_certificate_names_and_a_specific_address() -> None:
    names = host_names(["agent.test", "10.0.0.5", "::1"], "0.0.0.0", 8443)
    assert names == {"agent.test", "agent.test:8443", "10.0.0.5", "10.0.0.5:8443", "[::1]",
                     "[::1]:8443"}  # fmt: skip
    assert "192.0.2.1:8443" in host_names([], "192.0.2.1", 8443)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--listen", "0.0.0.0:8443"], "not a loopback address"),
        (["--listen", "0.0.0.0:8443", "--tls-cert", "c", "--tls-key", "k"], "--access"),
        (["--tls-cert", "c"], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", "ca"], "--tls-client-ca needs --tls-cert"),
        (["--access", "a", "--token-file", "t"], "do not go together"),
        (["--listen", "unix:/tmp/x.sock", "--tls-cert", "c", "--tls-key", "k"], "not a unix"),
    ],
)
def test_flags_that_would_serve_too_widely_are_refused(
    capsys: pytest.CaptureFixture[str], flags: list[str], says: str
) -> None:
    assert agent_main.main(flags) == 2
    err = capsys.readouterr().err
    assert says in err and err.startswith("cchain-agent: error: ")


def test_new_token_prints_a_token_once_and_the_lines_that_admit_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert agent_main.main(["--new-token", "web"]) == 0
    out = capsys.readouterr().out
    token, rest = out.split("\n", 1)
    assert len(token) == 64 and token not in rest
    access = load_access(_file(tmp_path, rest.replace("services = ", "services = web")))
    client = access.by_token(token)
    assert client is not None and client.name == "web" and client.allows("web")
    assert agent_main.main(["--new-token", "a]b"]) == 2
    # A comment character would cut the section line the output tells you to paste (the agent
    # then refuses the file: "no section headers"): refused here, where the name is given.
    capsys.readouterr()
    for name in ("web #1", "web ;1", "web#1"):
        assert agent_main.main(["--new-token", name]) == 2
    assert capsys.readouterr().out == ""


def test_with_an_access_file_a_token_header_names_the_client_and_a_challenge_is_refused(
    chain: CloudChain, tmp_path: Path
) -> None:
    access = load_access(_file(tmp_path, f"[client ci]\ntoken_sha256 = {token_hash('k' * 32)}"
                               "\nservices = web\n"))  # fmt: skip
    server = _server(chain, access)
    conn = Connection(None)  # type: ignore[arg-type]

    def request(**headers: str) -> Request:
        return Request("GET", "/v1/secret", "HTTP/1.1", {k.replace("_", "-"): v
                                                         for k, v in headers.items()})  # fmt: skip

    client = server._identify(request(x_cloudchain_token="k" * 32), "/v1/secret", conn)
    assert client is not None and client.name == "ci"
    for headers in ({"x_cloudchain_token": "j" * 32}, {}, {"x_cloudchain_auth": "c n m"}):
        with pytest.raises(Problem) as refused:
            server._identify(request(**headers), "/v1/secret", conn)
        assert refused.value.status == 403
    assert server._identify(request(), "/healthz", conn) is None
    server.pool.shutdown()


def test_a_shared_socket_directory_is_made_0711_or_must_already_be(tmp_path: Path) -> None:
    made = tmp_path / "made" / "agent.sock"
    bind_unix(made, shared=True).close()
    assert stat.S_IMODE(made.parent.stat().st_mode) == 0o711
    assert stat.S_IMODE(made.stat().st_mode) == 0o666
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(CloudChainConfigError, match="mode 0700, not 0711"):
        bind_unix(private / "agent.sock", shared=True)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700  # never repaired


def test_a_certificate_that_names_no_host_is_refused(tmp_path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    path = tmp_path / "cn-only.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(CloudChainConfigError, match="names no DNS name or IP address"):
        certificate_names(str(path))
