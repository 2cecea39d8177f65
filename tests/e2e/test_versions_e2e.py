"""Versions through the installed cchain, and racing writers, against a moto server."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import pytest
from support import BIN, Emulator

from cloudchain import CloudChain, IntegrityError

pytestmark = pytest.mark.e2e

ROW = ["-u", "alice", "-e", "billing"]
KEY = {"Service": {"S": "billing"}, "Username": {"S": "alice"}}


def _save(emulator: Emulator, value: str, *extra: str) -> int:
    result = emulator.run(*ROW, "--save", "-", *extra, stdin=value)
    assert result.code == 0, result.err
    match = re.search(r"version (\d+)", result.err)
    assert match, result.err
    return int(match.group(1))


def test_save_reports_versions_and_reads_any_retained_one(emulator: Emulator) -> None:
    assert [_save(emulator, f"v{n}") for n in (1, 2, 3)] == [1, 2, 3]
    assert emulator.run(*ROW, "--read").out == "v3\n"
    assert emulator.run(*ROW, "--read", "--secret-version", "1").out == "v1\n"
    missing = emulator.run(*ROW, "--read", "--secret-version", "9")
    assert missing.code == 3
    assert "version 9 of billing/alice" in missing.err


def test_history_plain_and_json_without_values(emulator: Emulator) -> None:
    _save(emulator, "secret-one")
    _save(emulator, "secret-two")
    plain = emulator.run(*ROW, "--history")
    assert plain.code == 0
    lines = plain.out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["2", "1"]
    who = r"arn:aws:sts::123456789012:user/moto"
    assert all(re.fullmatch(rf"\d+\t\d{{4}}-\d\d-\d\dT[\d:.]+Z\t{who}\tsave\t-\t(current|previous)", line)
               for line in lines), lines  # fmt: skip
    as_json = json.loads(emulator.run(*ROW, "--history", "--json").out)
    assert [v["version"] for v in as_json] == [2, 1]
    assert set(as_json[0]) == {"version", "saved_at", "saved_by", "action", "comment", "stage"}
    assert "secret-" not in plain.out + json.dumps(as_json)


def test_rollback_prints_the_new_version(emulator: Emulator) -> None:
    _save(emulator, "good")
    _save(emulator, "typo")
    result = emulator.run(*ROW, "--rollback", "1")
    assert (result.code, result.out) == (0, "3\n")
    assert emulator.run(*ROW, "--read").out == "good\n"
    assert emulator.run(*ROW, "--rollback", "7").code == 3


def test_expect_version_conflict_exits_4_and_writes_nothing(emulator: Emulator) -> None:
    assert _save(emulator, "first", "--expect-version", "0") == 1
    conflict = emulator.run(*ROW, "--save", "-", "--expect-version", "0", stdin="second")
    assert conflict.code == 4
    assert conflict.err == (
        "cchain: error: billing/alice in table 'safedb' is at version 1, not 0; nothing was saved\n"
    )
    assert emulator.run(*ROW, "--history").out.count("\n") == 1
    assert _save(emulator, "second", "--expect-version", "1") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*ROW, "--read", "--secret-version", "0"], "at least 1"),
        ([*ROW, "--read", "--secret-version", "x"], "invalid int value"),
        ([*ROW, "--history", "--secret-version", "1"], "--secret-version goes with --read"),
        ([*ROW, "--read", "--expect-version", "1"], "--expect-version goes with --save"),
        ([*ROW, "--rollback", "0"], "at least 1"),
        (["-e", "billing", "--history"], "needs -u/--user"),
        ([*ROW, "--read", "--history-size", "0"], "history_size must be a whole number"),
    ],
)
def test_version_flag_misuse_exits_2(emulator: Emulator, args: list[str], message: str) -> None:
    result = emulator.run(*args)
    assert result.code == 2
    assert message in result.err


def test_history_size_flag_prunes(emulator: Emulator) -> None:
    for n in range(4):
        _save(emulator, f"v{n}", "--history-size", "2")
    assert [line.split("\t")[0] for line in emulator.run(*ROW, "--history").out.splitlines()] == [
        "4",
        "3",
    ]
    assert emulator.run(*ROW, "--read", "--secret-version", "2").code == 3


def test_default_history_keeps_ten(emulator: Emulator) -> None:
    chain = CloudChain(endpoint_url=emulator.url, keyalias="alias/test")
    for n in range(12):
        chain.save("billing", "alice", f"v{n}")
    assert emulator.run(*ROW, "--history").out.split("\n")[-2].startswith("3\t")


def test_pre_versions_item_upgrades_through_the_cli(emulator: Emulator) -> None:
    blob = emulator.client("kms").encrypt(
        KeyId="alias/test",
        Plaintext=b"reference-format",
        EncryptionContext={"Service": "billing", "Username": "alice"},
    )["CiphertextBlob"]
    emulator.client("dynamodb").put_item(
        TableName="safedb", Item={**KEY, "Secret": {"S": base64.b64encode(blob).decode()}}
    )
    assert emulator.run(*ROW, "--history").out == "1\t-\t-\t-\t-\tcurrent\n"
    assert emulator.run(*ROW, "--read").out == "reference-format\n"
    assert _save(emulator, "upgraded") == 2
    assert emulator.run(*ROW, "--read", "--secret-version", "1").out == "reference-format\n"


def test_replayed_old_version_exits_1(emulator: Emulator) -> None:
    _save(emulator, "old-password")
    _save(emulator, "new-password")
    dynamodb = emulator.client("dynamodb")
    item = dynamodb.get_item(TableName="safedb", Key=KEY)["Item"]
    item["Secret"] = item["History"]["L"][0]["M"]["Secret"]
    item["Digest"] = item["History"]["L"][0]["M"]["Digest"]  # a careful attacker copies both
    dynamodb.put_item(TableName="safedb", Item=item)
    result = emulator.run(*ROW, "--read")
    assert result.code == 1
    assert result.out == ""
    assert "does not decrypt for this row and version" in result.err


def test_aws_cli_recipe_on_the_current_version(emulator: Emulator) -> None:
    _save(emulator, "one")
    _save(emulator, "two")
    item = emulator.client("dynamodb").get_item(TableName="safedb", Key=KEY)["Item"]
    context = {"Service": "billing", "Username": "alice", "Version": item["Version"]["N"]}
    plaintext = emulator.client("kms").decrypt(
        CiphertextBlob=base64.b64decode(item["Secret"]["S"]), EncryptionContext=context
    )["Plaintext"]
    assert plaintext == b"two"


WRITER = """
import sys
from cloudchain import CloudChain
chain = CloudChain.from_config()
for n in range(int(sys.argv[2])):
    chain.save("race", "shared", f"writer{sys.argv[1]}-save{n}")
"""


def test_concurrent_writers_lose_no_save(local_emulator: Emulator) -> None:
    writers, saves = 4, 15
    env = {**local_emulator.env, "CLOUDCHAIN_HISTORY": "100"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(w), str(saves)], env=env, stderr=subprocess.PIPE
        )
        for w in range(writers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    chain = CloudChain(endpoint_url=local_emulator.url)
    history = chain.history("race", "shared")
    assert history[0].version == writers * saves
    assert [v.version for v in history] == list(range(writers * saves, 0, -1))
    values = [chain.read("race", "shared", version=v.version) for v in history]
    written = {f"writer{w}-save{n}" for w in range(writers) for n in range(saves)}
    assert len(values) == len(set(values))
    assert set(values) == written
    for w in range(writers):
        mine = [v for v in reversed(values) if v.startswith(f"writer{w}-")]
        assert mine == [f"writer{w}-save{n}" for n in range(saves)]


def test_check_and_set_race_has_exactly_one_winner(local_emulator: Emulator) -> None:
    local_emulator.run("-u", "shared", "-e", "race", "--save", "-", stdin="start")
    procs = [
        subprocess.Popen(
            [str(BIN / "cchain"), "-u", "shared", "-e", "race", "--save=-", "--expect-version=1"],
            env=local_emulator.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(5)
    ]
    codes = []
    for n, proc in enumerate(procs):
        proc.communicate(f"racer-{n}".encode(), timeout=120)
        codes.append(proc.returncode)
    assert sorted(codes) == [0] + [4] * 4
    winner = codes.index(0)
    assert local_emulator.run("-u", "shared", "-e", "race", "--read").out == f"racer-{winner}\n"
    assert local_emulator.run("-u", "shared", "-e", "race", "--history").out.count("\n") == 2


def test_replay_is_refused_through_the_api_too(emulator: Emulator) -> None:
    chain = CloudChain(endpoint_url=emulator.url, keyalias="alias/test")
    chain.save("billing", "alice", "old")
    chain.save("billing", "alice", "new")
    dynamodb = emulator.client("dynamodb")
    item = dynamodb.get_item(TableName="safedb", Key=KEY)["Item"]
    item["Secret"] = item["History"]["L"][0]["M"]["Secret"]
    item["Digest"] = item["History"]["L"][0]["M"]["Digest"]  # a careful attacker copies both
    dynamodb.put_item(TableName="safedb", Item=item)
    with pytest.raises(IntegrityError):
        chain.read("billing", "alice")
