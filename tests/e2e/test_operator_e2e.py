"""The operator's view, as whole processes: errors with hints, --doctor, shell completion in a
real bash, and --render through the installed cchain."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from helpers import KEY_ALIAS
from support import BIN, Emulator

from cloudchain import CloudChain

pytestmark = pytest.mark.e2e

ROW = ("-u", "alice", "-e", "billing")


def _lines(err: str) -> list[str]:
    lines = err.splitlines()
    assert len(lines) <= 2 and lines[0].startswith("cchain: error: "), err
    assert all(line.startswith("cchain: hint: ") for line in lines[1:]), err
    return lines


# -- errors that say what to do ---------------------------------------------------------------


def test_no_credentials_names_the_ways_to_give_them(emulator: Emulator) -> None:
    bare = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    env = {k: v for k, v in emulator.env.items() if k not in bare}
    local = subprocess.run(
        [str(BIN / "cchain"), *ROW, "--read"], capture_output=True, text=True, env=env
    )
    error, hint = _lines(local.stderr)
    assert local.returncode == 1
    assert "Unable to locate credentials" in error
    assert "AWS_PROFILE" in hint and "aws configure" in hint and "--profile" in hint
    assert "the local emulator accepts any credentials" in hint
    assert "AWS_ACCESS_KEY_ID=testing" in hint
    remote = subprocess.run(
        [str(BIN / "cchain"), *ROW, "--read", "--endpoint-url", "https://dynamodb.example.com"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert "emulator" not in _lines(remote.stderr)[1]


def test_a_missing_table_names_region_and_endpoint_before_suggesting_setup(
    emulator: Emulator,
) -> None:
    result = emulator.run(*ROW, "--read", "--table", "absent", "--region", "eu-west-3")
    error, hint = _lines(result.err)
    assert result.code == 1
    assert "the table does not exist in region eu-west-3 at " + emulator.url in error
    assert "--region" in hint and "cchain --doctor" in hint and "before `cchain --setup`" in hint


def test_access_denied_names_the_operation_and_points_to_the_policy(emulator: Emulator) -> None:
    def deny_reads(operation: str, count: int, body: bytes) -> str:
        return "denied" if operation == "GetItem" else "forward"

    with FaultProxy(int(emulator.url.rsplit(":", 1)[1]), deny_reads) as proxy:
        result = emulator.run(*ROW, "--read", env={"CLOUDCHAIN_ENDPOINT_URL": proxy.url})
    error, hint = _lines(result.err)
    assert result.code == 1
    assert "access denied for GetItem" in error and "table 'safedb'" in error
    assert "--policy read" in hint


def test_a_config_file_that_does_not_parse_names_the_file_and_line(
    emulator: Emulator, tmp_path: Path
) -> None:
    rc = tmp_path / "broken.rc"
    rc.write_text("[dynamo]\ntablename = safedb\nthis line is no setting\n")
    result = emulator.run(*ROW, "--read", "--config", str(rc))
    error, _ = _lines(result.err)
    assert result.code == 1
    assert f"cannot parse config file {rc}: line 3 is not `key = value`" in error


# -- cchain --doctor ------------------------------------------------------------------------------


def test_doctor_on_a_healthy_setup(emulator: Emulator) -> None:
    result = emulator.run("--doctor", "--write")
    assert result.code == 0, result.out
    checks = [line.split()[:2] for line in result.out.splitlines()]
    assert checks == [
        ["ok", "config"], ["ok", "settings"], ["ok", "credentials"], ["ok", "endpoint"],
        ["ok", "table"], ["ok", "key"], ["ok", "permissions"], ["skip", "agent"], ["ok", "write:"],
        ["ok", "write:"], ["ok", "write:"],
    ]  # fmt: skip
    out = result.out
    assert f"endpoint {emulator.url} (environment CLOUDCHAIN_ENDPOINT_URL)" in out
    assert "key alias alias/test (environment CLOUDCHAIN_KEY_ALIAS)" in out
    assert "arn:aws:sts::123456789012:user/moto (credentials from env)" in out
    assert "TTL on ExpiresAt" in out and "PAY_PER_REQUEST" in out
    assert list(CloudChain(endpoint_url=emulator.url).list()) == []  # the probe was purged


def test_doctor_keeps_going_and_says_what_to_fix(emulator: Emulator, tmp_path: Path) -> None:
    rc = tmp_path / "rc"
    rc.write_text("[dynamo]\ntablename = missing\nregoin_name = typo\n")
    result = emulator.run("--doctor", "--json", "--config", str(rc))
    assert result.code == 1
    found = {r["check"]: r for r in json.loads(result.out)}
    assert set(found["config"]) == {"check", "status", "detail", "fix"}
    assert (
        found["config"]["status"] == "FAIL"
        and f"{rc} line 3: cloudchain reads no key 'regoin_name' in [dynamo]; did you mean "
        "region_name?"
        in found["config"]["detail"]
    )
    assert found["table"]["status"] == "FAIL"
    assert "does not exist in region us-east-1" in found["table"]["detail"]
    assert "--region" in found["table"]["fix"]
    assert found["key"]["status"] == "ok"  # independent of the table: still checked
    assert found["permissions"]["status"] == "skip"


# -- shell completion, in a real bash ------------------------------------------------------------


def _complete(emulator: Emulator, line: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash completes for `line`, with the script `cchain --completion bash` prints."""
    script = (
        "source <(cchain --completion bash)\n"
        'COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}\n'
        'read -ra COMP_WORDS <<< "$COMP_LINE"\n'
        '[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")\n'
        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        '"$(complete -p cchain | sed -E "s/.* -F ([^ ]+) .*/\\1/")" cchain '
        '"${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(
        ["bash", "-c", script, "bash", line], capture_output=True, text=True, timeout=60,
        env={**emulator.env, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [word.strip() for word in proc.stdout.splitlines() if word.strip()]


def test_completion_completes_flags_services_and_users(emulator: Emulator) -> None:
    chain = CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS)
    for service, user in [("billing", "alice"), ("billing", "bob"), ("web", "carol")]:
        chain.save(service, user, "v")
    assert {"--save", "--read", "--doctor", "--diff"} <= set(_complete(emulator, "cchain --"))
    assert _complete(emulator, "cchain --reen") == ["--reencrypt"]
    assert _complete(emulator, "cchain -e ") == ["billing", "web"]
    assert _complete(emulator, "cchain -e b") == ["billing"]
    assert _complete(emulator, "cchain -e billing -u ") == ["alice", "bob"]
    dead = {"CLOUDCHAIN_ENDPOINT_URL": "http://127.0.0.1:9"}
    assert _complete(emulator, "cchain -e ", env=dead) == []


# -- --render through the installed cchain --------------------------------------------------------


def test_render_through_the_cli(emulator: Emulator, tmp_path: Path) -> None:
    chain = CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS)
    chain.save("billing", "db", "p@ss")
    template = tmp_path / "app.j2"
    template.write_text('db={{ secret("billing", "db") }}\n{{ services("billing") | length }}\n')
    rendered = emulator.run("--render", str(template))
    assert (rendered.code, rendered.out) == (0, "db=p@ss\n1\n")
    listed = emulator.run("--render", str(template), "--dry-run")
    assert listed.out == "secret\tbilling\tdb\nservice\tbilling\n"
    escape = emulator.run("--render", "-", stdin="{{ ''.__class__.__mro__ }}")
    assert escape.code == 2 and "unsafe" in escape.err
