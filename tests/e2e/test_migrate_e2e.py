"""--import-from as a user runs it: the installed cchain against a moto server behind the fault
proxy, which records every request. No write ever reaches a source; a dry run decrypts
nothing; a disabled source key, source throttling and a lost write reply leave a true
summary, and a re-run finishes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import timezone
from pathlib import Path
from typing import Any

import boto3
import credstash
import pytest
from credstash_table import CREDSTASH_TABLE
from faultproxy import FaultProxy, forward_all
from helpers import KEY_ALIAS, NASTY_VALUES
from support import BIN, Emulator, running_agent

from cloudchain import CloudChain

pytestmark = pytest.mark.e2e

# What an import may ask of a source: reads only. Anything else must be a write to our table.
SOURCE_READS = {
    "Scan", "Decrypt", "GetParametersByPath", "GetParameterHistory", "GetParameter",
    "ListSecrets", "ListSecretVersionIds", "GetSecretValue",
}  # fmt: skip
TARGET_CALLS = {"GetItem", "PutItem", "Encrypt", "DescribeKey", "GetCallerIdentity"}
WRITES_TO_SOURCES = ("credential-store",)


def _port(emulator: Emulator) -> int:
    return int(emulator.url.rsplit(":", 1)[1])


def _through(emulator: Emulator, proxy: FaultProxy) -> Emulator:
    return Emulator(proxy.url, {**emulator.env, "CLOUDCHAIN_ENDPOINT_URL": proxy.url})


def _credstash(emulator: Emulator, secrets: dict[str, list[str]]) -> None:
    """A credstash table on the emulator, written by credstash's own putSecret."""
    emulator.client("dynamodb").create_table(**CREDSTASH_TABLE)
    dynamodb = boto3.resource(
        "dynamodb", endpoint_url=emulator.url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    for name, values in secrets.items():
        for n, value in enumerate(values, 1):
            credstash.putSecret(name, value, version=str(n), kms_key=KEY_ALIAS,
                                kms=emulator.client("kms"), dynamodb=dynamodb)  # fmt: skip


def _made(proxy: FaultProxy, since: int) -> list[tuple[str, bytes]]:
    with proxy._lock:
        return list(proxy.bodies[since:])


def test_no_write_reaches_a_source_and_a_dry_run_decrypts_nothing(emulator: Emulator) -> None:
    """Also SSM's own test (moto's SSM costs seconds to load, once per process): parameters
    as chamber writes them. `chamber write SERVICE KEY` is PutParameter with Name=/SERVICE/KEY
    (lower-cased), Type=SecureString, KeyId=alias/parameter_store_key (or
    CHAMBER_KMS_KEY_ALIAS) and Overwrite=true, each write a new version."""
    _credstash(emulator, {"db.password": ["a1", "a2"], "api.token": ["t1"]})
    kms, ssm = emulator.client("kms"), emulator.client("ssm")
    kms.create_alias(
        AliasName="alias/parameter_store_key", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"]
    )
    for value in ("s1", "s2", NASTY_VALUES["unicode"]):
        ssm.put_parameter(Name="/billing/key", Value=value, Type="SecureString",
                          KeyId="alias/parameter_store_key", Overwrite=True)  # fmt: skip
    ssm.put_parameter(Name="/billing/region", Value="eu-west-1", Type="String")
    ssm.put_parameter(Name="/other/key", Value="outside", Type="String")
    sm = emulator.client("secretsmanager")
    sm.create_secret(Name="prod/db", SecretString="m1")
    sm.put_secret_value(SecretId="prod/db", SecretBinary=b"\x00m2")
    with FaultProxy(_port(emulator), forward_all) as proxy:
        user = _through(emulator, proxy)
        for source in ("credstash", "ssm:/billing", "secretsmanager:prod/"):
            before = len(proxy.bodies)
            dry = user.run("--import-from", source, "--dry-run")
            assert dry.code == 0, dry.err
            dry_ops = {op for op, _ in _made(proxy, before)}
            assert not dry_ops & {"Decrypt", "GetSecretValue", "GetParameter", "PutItem"}, source
            assert b'"WithDecryption": true' not in b"".join(b for _, b in _made(proxy, before))
            done = user.run("--import-from", source)
            assert done.code == 0, done.err
        for source in ("ssm:/billing", "secretsmanager:prod/"):
            verified = user.run("--import-from", source, "--verify")
            assert verified.code == 0, verified.err
            assert "m1" not in verified.out + verified.err
        for operation, body in _made(proxy, 0):
            assert operation in SOURCE_READS | TARGET_CALLS, operation
            if operation in TARGET_CALLS - {"GetCallerIdentity", "DescribeKey", "Encrypt"}:
                assert json.loads(body)["TableName"] == "safedb", operation
    chain = CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS)
    assert [(e.service, e.user) for e in chain.list()] == [
        ("api", "token"), ("billing", "key"), ("billing", "region"), ("db", "password"),
        ("prod", "db"),
    ]  # fmt: skip
    history = ssm.get_parameter_history(Name="/billing/key", WithDecryption=True)["Parameters"]
    for entry in history:
        assert chain.read("billing", "key", version=int(entry["Version"])) == entry["Value"]
    newest = emulator.client("dynamodb").get_item(
        TableName="safedb", Key={"Service": {"S": "billing"}, "Username": {"S": "key"}}
    )["Item"]
    assert newest["SourceVersion"] == {"S": "3"} and newest["Action"] == {"S": "import"}
    taken = history[-1]["LastModifiedDate"].astimezone(timezone.utc)
    assert newest["SourceTime"]["S"].startswith(taken.strftime("%Y-%m-%dT%H:%M:%S"))
    assert newest["SavedAt"] != newest["SourceTime"]
    assert chain.read("prod", "db") == b"\x00m2"  # binary stays binary


def _policy(rules: dict[str, Callable[[int], str]]) -> Callable[[str, int, bytes], str]:
    return lambda operation, count, body: rules.get(operation, lambda n: "forward")(count)


def test_source_faults_leave_a_true_summary_and_a_rerun_finishes(emulator: Emulator) -> None:
    secrets = {f"app.k{n}": [f"v{n}-1", f"v{n}-2"] for n in range(4)}
    _credstash(emulator, secrets)
    with FaultProxy(_port(emulator)) as proxy:
        user = _through(emulator, proxy)
        # The source key is disabled after the first row's two data keys: one row lands.
        proxy.policy = _policy({"Decrypt": lambda n: "disabled" if n > 2 else "forward"})
        stopped = user.run("--import-from", "credstash", "--max-workers", "1")
        assert stopped.code == 1
        assert "stopped: 1 rows written (2 versions), 3 not written" in stopped.err
        assert "the KMS key is disabled (DisabledException)" in stopped.err
        assert stopped.out.splitlines() == [f"not-written\tapp/k{n}" for n in (1, 2, 3)]
        # Throttled scans and decrypts are retried; a lost reply to a write is recognised.
        proxy.counts.clear()
        proxy.policy = _policy({
            "Scan": lambda n: "throttle" if n == 1 else "forward",
            "Decrypt": lambda n: "throttle" if n in (1, 3) else "forward",
            "PutItem": lambda n: "lose-reply" if n == 1 else "forward",
        })  # fmt: skip
        finished = user.run("--import-from", "credstash", "--json")
        assert finished.code == 0, finished.err
        summary: dict[str, Any] = json.loads(finished.out)
        assert summary["written"] == ["app/k1", "app/k2", "app/k3"]
        assert (summary["versions_written"], summary["already_imported"]) == (6, 2)
        assert proxy.counts["PutItem"] == 4  # the lost reply's write was sent once more
        again = user.run("--import-from", "credstash", "--verify")
        assert again.code == 0, again.err
    history = CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS).history("app", "k3")
    assert [v.action for v in history] == ["import", "import"]


def test_ctrl_c_stops_an_import_at_once_says_what_landed_and_a_rerun_finishes(
    emulator: Emulator,
) -> None:
    rows = 64
    _credstash(emulator, {f"app.k{n:02d}": [f"v{n}"] for n in range(rows)})
    # Every request 30 ms slower, so the import is still going when the signal comes.
    with FaultProxy(_port(emulator), lambda *_: "delay:0.03") as proxy:
        user = _through(emulator, proxy)
        proc = subprocess.Popen(
            [str(BIN / "cchain"), "--import-from", "credstash"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=user.env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while proxy.counts["PutItem"] < 32:  # so at least 16 rows have landed
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and time.monotonic() - sent < 2, err
        message = err.decode()
        assert "import from credstash:credential-store interrupted:" in message
        reported = int(message.split("interrupted: ", 1)[1].split()[0])
        landed = len(list(CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS).list("app")))
        assert 16 <= reported <= landed <= reported + 16 < rows  # at most those in flight
    rerun = emulator.run("--import-from", "credstash")
    assert rerun.code == 0, rerun.err
    assert f"{rows - landed} rows written ({rows - landed} versions), {landed}" in rerun.err


def test_an_import_refreshes_the_agent_of_each_service_it_wrote(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.client("secretsmanager").create_secret(Name="prod/db", SecretString="imported")
    with running_agent(emulator, tmp_path) as agent:
        read = "/v1/secret?service=prod&user=db"
        assert agent.curl(read)[0] == 404  # the agent now holds this miss for a while
        done = emulator.run("--import-from", "secretsmanager:prod/", env=agent.env)
        assert done.code == 0 and "warning" not in done.err, done.err
        assert agent.curl(read)[2] == b"imported"  # seen at once: the import told the agent
