"""Who, when and why; tags; diff; the recoverable delete: through the installed cchain (e2e)."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from faultproxy import FaultProxy
from support import BIN, Emulator

pytestmark = pytest.mark.e2e

ROW = ("-u", "alice", "-e", "billing")
MOTO_ARN = "arn:aws:sts::123456789012:user/moto"
KEY = {"Service": {"S": "billing"}, "Username": {"S": "alice"}}


def _history(emulator: Emulator) -> list[list[str]]:
    result = emulator.run(*ROW, "--history")
    assert result.code == 0, result.err
    return [line.split("\t") for line in result.out.splitlines()]


def test_who_when_and_why_of_every_kind_of_write(emulator: Emulator) -> None:
    runs = [
        (("--save", "-", "--comment", "first password"), "one"),
        (("--save", "-"), "two"),
        (("--rollback", "1", "--comment", "two broke the nightly job"), None),
        (("--delete", "--comment", "alice left"), None),
        (("--undelete", "--comment", "alice is back"), None),
    ]
    for args, stdin in runs:
        result = emulator.run(*ROW, *args, stdin=stdin)
        assert result.code == 0, (args, result.err)
    imported = emulator.run(
        "-e", "billing", "--import", "-", "--comment", "rotation", stdin='{"alice": "three"}'
    )
    assert imported.code == 0, imported.err
    rows = _history(emulator)
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("6", MOTO_ARN, "import", "rotation"),
        ("5", MOTO_ARN, "undelete", "alice is back"),
        ("4", MOTO_ARN, "delete", "alice left"),
        ("3", MOTO_ARN, "rollback", "two broke the nightly job"),
        ("2", MOTO_ARN, "save", "-"),
        ("1", MOTO_ARN, "save", "first password"),
    ]
    as_json = json.loads(emulator.run(*ROW, "--history", "--json").out)
    assert as_json[0] == {"version": 6, "saved_at": rows[0][1], "saved_by": MOTO_ARN,
                          "action": "import", "comment": "rotation", "stage": "current"}  # fmt: skip
    assert as_json[4]["comment"] is None
    bad = emulator.run(*ROW, "--save", "-", "--comment", "x" * 257, stdin="v",
                       env={"CLOUDCHAIN_ENDPOINT_URL": "http://127.0.0.1:9"})  # fmt: skip
    assert bad.code == 2 and "at most 256 characters" in bad.err


@pytest.mark.parametrize("fault", ["denied", "drop"])
def test_a_save_goes_on_when_sts_refuses_or_is_unreachable(emulator: Emulator, fault: str) -> None:
    def sts_fails(operation: str, count: int, body: bytes) -> str:
        return fault if operation == "GetCallerIdentity" else "forward"

    with FaultProxy(int(emulator.url.rsplit(":", 1)[1]), sts_fails) as proxy:
        started = time.monotonic()
        saved = emulator.run(*ROW, "--save", "-", stdin="v",
                             env={"CLOUDCHAIN_ENDPOINT_URL": proxy.url})  # fmt: skip
        took = time.monotonic() - started
    assert saved.code == 0, saved.err
    assert proxy.counts["GetCallerIdentity"] >= 1  # STS really was asked, and failed
    assert took < 10
    assert _history(emulator)[0][2] == "unknown"


def test_tags_set_filter_and_show(emulator: Emulator) -> None:
    def save(user: str, service: str, *flags: str) -> None:
        result = emulator.run("-u", user, "-e", service, "--save", "-", *flags, stdin=f"{user}!")
        assert result.code == 0, result.err

    save("alice", "billing", "--tag", "env=prod", "--tag", "team=pay")
    save("bob", "billing", "--tag", "env=dev")
    save("carol", "web", "--tag", "env=prod")
    listed = emulator.run("--list", "--tag", "env=prod")
    assert listed.out == "billing\talice\nweb\tcarol\n"
    assert (
        emulator.run("--list", "--tag", "env=prod", "--tag", "team=pay").out == "billing\talice\n"
    )
    as_json = json.loads(emulator.run("--list", "-e", "billing", "--json").out)
    assert [r["tags"] for r in as_json] == [{"env": "prod", "team": "pay"}, {"env": "dev"}]
    exported = emulator.run("-e", "billing", "--export", "--tag", "env=prod")
    assert json.loads(exported.out) == {"alice": "alice!"}
    ran = emulator.run("-e", "billing", "--tag", "env=dev", "--exec", "--", "sh", "-c",
                       'echo "${ALICE:-none} $BOB"')  # fmt: skip
    assert ran.out == "none bob!\n"
    changed = emulator.run(*ROW, "--tags", "--untag", "team", "--tag", "owner=ops")
    assert (changed.code, changed.out) == (0, "env=prod\nowner=ops\n")
    assert emulator.run(*ROW, "--tags", "--json").out == '{"env": "prod", "owner": "ops"}\n'
    assert len(_history(emulator)) == 1  # tags are not versions
    bad = emulator.run(*ROW, "--tags", "--tag", "no equals sign")
    assert bad.code == 2 and "KEY=VALUE" in bad.err


def test_diff_redacted_by_default(emulator: Emulator) -> None:
    for value in ("host=db\nuser=app\npass=one\n", "host=db\nuser=app\npass=two\nport=5\n",
                  "host=db\nuser=app\npass=two\nport=5\n"):  # fmt: skip
        assert emulator.run(*ROW, "--save", "-", stdin=value + "\n").code == 0
    results = {
        "default": emulator.run(*ROW, "--diff"),
        "one": emulator.run(*ROW, "--diff", "1"),
        "two": emulator.run(*ROW, "--diff", "1", "2"),
        "json": emulator.run(*ROW, "--diff", "1", "--json"),
        "values": emulator.run(*ROW, "--diff", "1", "--show-values"),
        "pruned": emulator.run(*ROW, "--diff", "9"),
    }
    assert results["default"].out == "v2 -> v3: unchanged, 33 bytes, 4 lines\n"
    assert results["one"].out == (
        "v1 -> v3: changed, 26 -> 33 bytes, 3 -> 4 lines, lines changed: 3, 4\n"
    )
    assert results["two"].out.startswith("v1 -> v2: changed")
    assert json.loads(results["json"].out) == {
        "from": 1, "to": 3, "changed": True, "from_bytes": 26, "to_bytes": 33,
        "changed_lines": [3, 4],
    }  # fmt: skip
    for name in ("default", "one", "two", "json"):
        assert "pass=" not in results[name].out + results[name].err, name
    assert "-pass=one\n+pass=two\n+port=5\n" in results["values"].out
    assert results["pruned"].code == 3
    assert "retained: 3, 2, 1" in results["pruned"].err


def test_diff_of_binary_secrets(emulator: Emulator) -> None:
    for data in (b"\x00\x01\x02", b"\x00\x01\x02\x03"):
        assert emulator.run(*ROW, "--save", "-", "--binary", stdin=data).code == 0
    result = emulator.run(*ROW, "--diff", "--json")
    assert json.loads(result.out) == {"from": 1, "to": 2, "changed": True, "from_bytes": 3,
                                      "to_bytes": 4, "changed_lines": []}  # fmt: skip
    shown = emulator.run(*ROW, "--diff", "--show-values")
    assert shown.out == "v1 -> v2: changed, 3 -> 4 bytes (binary: compared by bytes only)\n"
    assert "no values were printed" in shown.err


def _aws_secret_attribute(emulator: Emulator) -> str:
    """The reference recipe's first step, with the real AWS CLI: the Secret attribute."""
    proc = subprocess.run(
        [str(BIN / "aws"), "dynamodb", "get-item", "--table-name", "safedb",
         "--endpoint-url", emulator.url, "--region", "us-east-1",
         "--key", json.dumps(KEY), "--query", "Item.Secret.S", "--output", "text"],
        capture_output=True, text=True, env=emulator.env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_whole_delete_cycle(emulator: Emulator) -> None:
    assert emulator.run(*ROW, "--save", "-", stdin="one").code == 0
    assert emulator.run(*ROW, "--save", "-", stdin="two").code == 0
    assert emulator.run("-u", "bob", "-e", "billing", "--save", "-", stdin="b").code == 0
    assert _aws_secret_attribute(emulator) not in ("", "None")  # the recipe reads a live one
    deleted = emulator.run(*ROW, "--delete", "--recovery-days", "7")
    assert deleted.code == 0, deleted.err
    assert "--undelete restores it until" in deleted.err
    assert _aws_secret_attribute(emulator) == "None"  # nothing left for the recipe to read
    checks = {
        "read": emulator.run(*ROW, "--read"),
        "old version": emulator.run(*ROW, "--read", "--secret-version", "1"),
        "again": emulator.run(*ROW, "--delete"),
        "undelete bob": emulator.run("-u", "bob", "-e", "billing", "--undelete"),
        "purge bob": emulator.run("-u", "bob", "-e", "billing", "--purge"),
    }
    assert {name: r.code for name, r in checks.items()} == {
        "read": 3, "old version": 3, "again": 3, "undelete bob": 3, "purge bob": 2
    }  # fmt: skip
    assert "--force" in checks["purge bob"].err
    assert emulator.run("--list").out == "billing\tbob\n"
    gone = emulator.run("--list", "--deleted").out.split("\t")
    assert gone[:2] == ["billing", "alice"] and gone[3] == MOTO_ARN
    expires = int(time.time()) + 7 * 86400
    listed = json.loads(emulator.run("--list", "--deleted", "--json").out)
    assert listed[0]["deleted_by"] == MOTO_ARN and listed[0]["expires_at"] == gone[4].strip()
    assert abs(time.mktime(time.strptime(gone[4].strip(), "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
               - expires) < 60  # fmt: skip
    assert json.loads(emulator.run("-e", "billing", "--export").out) == {"bob": "b"}
    restored = emulator.run(*ROW, "--undelete")
    assert (restored.code, restored.out) == (0, "4\n")
    assert emulator.run(*ROW, "--read").out == "two\n"
    assert emulator.run(*ROW, "--undelete").code == 3  # not deleted
    # The recovery window passes (simulated: ExpiresAt in the past): gone for every command.
    assert emulator.run(*ROW, "--delete").code == 0
    dynamodb = emulator.client("dynamodb")
    item = dynamodb.get_item(TableName="safedb", Key=KEY)["Item"]
    item["ExpiresAt"] = {"N": str(int(time.time()) - 1)}
    dynamodb.put_item(TableName="safedb", Item=item)
    with ThreadPoolExecutor(4) as pool:
        after = list(pool.map(lambda argv: emulator.run(*argv), [
            (*ROW, "--undelete"), (*ROW, "--history"), (*ROW, "--read"), ("--list", "--deleted"),
        ]))  # fmt: skip
    assert [r.code for r in after] == [3, 3, 3, 0] and after[3].out == ""
    # Until DynamoDB's TTL removes it, the expired item still holds ciphertexts: purge
    # destroys them now. Afterwards no ciphertext of any version is left in the table.
    assert "Secret" in json.dumps(dynamodb.scan(TableName="safedb")["Items"])
    assert emulator.run(*ROW, "--purge").code == 0
    assert emulator.run("-u", "bob", "-e", "billing", "--purge", "--force").code == 0
    scan: Any = dynamodb.scan(TableName="safedb")
    assert scan["Items"] == []
