"""docs/kubernetes.md's External Secrets Operator manifests, made real: every ExternalSecret's
requests are built from its SecretStore as ESO's webhook provider builds them (the URL and
headers templated from remoteRef and the token Secret), sent to a real agent over TLS with the
access file the page shows, and the JSON answers cut with the store's jsonPath (jsonpath-ng)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from certs import Authority
from support import REPO, Emulator, running_agent

from cloudchain import CloudChain
from cloudchain.agent.access import token_hash

jsonpath_ng = pytest.importorskip("jsonpath_ng", reason="the test extra installs jsonpath-ng")
pytestmark = pytest.mark.e2e
PAGE = REPO / "docs" / "kubernetes.md"
TEMPLATE = re.compile(r"\{\{\s*\.(\w+)\.(\w+)\s*\}\}")


def _documents() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), re.S)
    found = [doc for block in blocks for doc in yaml.safe_load_all(block)]
    return [doc for doc in found if isinstance(doc, dict) and "kind" in doc]


def _render(text: str, values: dict[str, dict[str, str]]) -> str:
    """ESO's Go template, for the one form the page uses: {{ .group.name }}."""
    rendered = TEMPLATE.sub(lambda m: values[m.group(1)][m.group(2)], text)
    assert "{{" not in rendered, f"a template the test does not know: {text}"
    return rendered


def _get(url: str, headers: dict[str, str], port: int, ca: Path) -> tuple[int, bytes]:
    """GET url as ESO would (its Host, its headers), at the agent on 127.0.0.1:port."""
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=str(ca))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=20)
    connection.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), 20),
        server_hostname=parts.hostname,
    )
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    connection.putrequest("GET", target, skip_host=True)
    connection.putheader("Host", parts.netloc)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    answer = connection.getresponse()
    return answer.status, answer.read()


def test_the_pages_external_secrets_read_what_they_say(seeded: Emulator, tmp_path: Path) -> None:
    docs = _documents()
    stores = {d["metadata"]["name"]: d for d in docs if d["kind"] == "SecretStore"}
    externals = [d for d in docs if d["kind"] == "ExternalSecret"]
    token_secret = next(d for d in docs if d["kind"] == "Secret")
    assert token_secret["metadata"]["labels"]["external-secrets.io/type"] == "webhook"
    assert len(stores) == 2 and len(externals) == 2
    # The page's access file, with this test's token.
    ini = re.search(r"```ini\n(.*?)```", PAGE.read_text(), re.S).group(1)  # type: ignore[union-attr]
    token = "e" * 64
    access = tmp_path / "access.ini"
    access.write_text(re.sub(r"token_sha256 = \w+", f"token_sha256 = {token_hash(token)}", ini))

    ca = Authority(tmp_path, "cluster")
    first = next(iter(stores.values()))["spec"]["provider"]["webhook"]
    host = urlsplit(first["url"].replace("{{", "").replace("}}", "")).hostname
    cert, key = ca.issue("agent", str(host), dns=(str(host),))
    for store in stores.values():
        hook = store["spec"]["provider"]["webhook"]
        assert base64.b64decode(hook["caBundle"]).startswith(b"-----BEGIN CERTIFICATE-----")
        assert hook["secrets"][0]["secretRef"]["name"] == token_secret["metadata"]["name"]
    with running_agent(seeded, tmp_path, "--listen", "127.0.0.1:0", "--tls-cert", str(cert),
                       "--tls-key", str(key), "--access", str(access)) as agent:  # fmt: skip
        port = int(agent.address.rsplit(":", 1)[1])
        synced: dict[str, dict[str, Any]] = {}
        for external in externals:
            spec = external["spec"]
            hook = stores[spec["secretStoreRef"]["name"]]["spec"]["provider"]["webhook"]
            refs = [(item["secretKey"], item["remoteRef"]) for item in spec.get("data", [])]
            refs += [(None, item["extract"]) for item in spec.get("dataFrom", [])]
            target: dict[str, Any] = {}
            for secret_key, ref in refs:
                values = {"remoteRef": {"key": ref["key"], "property": ref.get("property", "")},
                          "auth": {"token": token}}  # fmt: skip
                url = _render(hook["url"], values).replace(":8443/", f":{port}/")
                headers = {name: _render(value, values) for name, value in hook["headers"].items()}
                assert hook["method"] == "GET"
                status, body = _get(url, headers, port, ca.path)
                assert status == 200, body
                found = jsonpath_ng.parse(_render(hook["result"]["jsonPath"], values)).find(
                    json.loads(body)
                )
                assert len(found) == 1
                if secret_key is None:  # dataFrom.extract: the object's keys are the Secret's
                    target.update(found[0].value)
                else:
                    target[secret_key] = found[0].value
            synced[external["spec"]["target"]["name"]] = target
        # A service outside the token's scope: refused, as one that does not exist is.
        refused = {
            service: _get(_render(first["url"], {"remoteRef": {"key": service}}).replace(
                ":8443/", f":{port}/"), {"X-Cloudchain-Token": token}, port, ca.path)
            for service in ("payroll", "nosuch")
        }  # fmt: skip
        assert len(set(refused.values())) == 1 and refused["payroll"][0] == 403
    assert synced == {
        "billing-alice": {"password": "hunter3"},
        "billing": {"alice": "hunter3", "bob": "b0b"},
    }


@pytest.fixture
def seeded(emulator: Emulator) -> Emulator:
    chain = CloudChain(endpoint_url=emulator.url, keyalias="alias/test")
    chain.save("billing", "alice", "hunter3")
    chain.save("billing", "bob", "b0b")
    chain.save("payroll", "ceo", "not for eso")
    return emulator
