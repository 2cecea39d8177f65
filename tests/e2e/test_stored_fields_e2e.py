"""Fields read back from the table, through the installed cchain: printed on one line, escaped,
whatever a writer with table access planted in them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import Emulator

pytestmark = pytest.mark.e2e

ROW = ["-u", "alice", "-e", "billing"]
KEY = {"Service": {"S": "billing"}, "Username": {"S": "alice"}}
# A newline forges a whole output line; ESC and BEL drive the terminal; U+202E reverses text.
FORGED = "save\n9\t2099-01-01T00:00:00Z\tarn:aws:iam::1:root\tsave\tforged\x1b[2J\x07\u202e"


def _saved(emulator: Emulator, *extra: str) -> dict[str, Any]:
    result = emulator.run(*ROW, "--save", "-", *extra, stdin="s3cret")
    assert result.code == 0, result.err
    return dict(emulator.client("dynamodb").get_item(TableName="safedb", Key=KEY)["Item"])


def _plant(emulator: Emulator, item: dict[str, Any]) -> None:
    emulator.client("dynamodb").put_item(TableName="safedb", Item=item)


def _one_line_each_and_no_control(text: str, lines: int) -> None:
    assert text.count("\n") == lines, text
    assert not any(c in text for c in "\x1b\x07\u202e\r"), text


def test_history_escapes_a_planted_action_and_saved_at(emulator: Emulator) -> None:
    item = _saved(emulator)
    item["Action"] = {"S": FORGED}
    item["SavedAt"] = {"S": "2026-01-01\n8\tforged"}
    _plant(emulator, item)
    result = emulator.run(*ROW, "--history")
    assert result.code == 0, result.err
    _one_line_each_and_no_control(result.out, 1)
    fields = result.out.rstrip("\n").split("\t")
    assert len(fields) == 6 and fields[5] == "current"
    assert fields[1] == "2026-01-01\\n8\\tforged"
    assert fields[3].startswith("save\\n9\\t2099")
    as_json = json.loads(emulator.run(*ROW, "--history", "--json").out)
    assert as_json[0]["action"] == FORGED  # JSON carries it exactly, escaped by JSON itself


def test_tags_escape_a_planted_key_and_value(emulator: Emulator) -> None:
    item = _saved(emulator, "--tag", "env=prod")
    item["Tags"] = {"M": {"env\nteam": {"S": "pay\x1b[31m"}, "ok": {"S": "v\u202e"}}}
    _plant(emulator, item)
    result = emulator.run(*ROW, "--tags")
    assert result.code == 0, result.err
    _one_line_each_and_no_control(result.out, 2)
    assert result.out == "env\\nteam=pay\\x1b[31m\nok=v\\u202e\n"


def test_list_deleted_escapes_a_planted_delete_time(emulator: Emulator) -> None:
    _saved(emulator)
    assert emulator.run(*ROW, "--delete").code == 0
    item = dict(emulator.client("dynamodb").get_item(TableName="safedb", Key=KEY)["Item"])
    item["SavedAt"] = {"S": "2026-01-01T00:00:00Z\nbilling\tforged\t-\t-\t-\x1b]0;x\x07"}
    _plant(emulator, item)
    result = emulator.run("--list", "--deleted")
    assert result.code == 0, result.err
    _one_line_each_and_no_control(result.out, 1)
    assert (
        result.out.split("\t")[2]
        == "2026-01-01T00:00:00Z\\nbilling\\tforged\\t-\\t-\\t-\\x1b]0;x\\x07"
    )


def test_list_deleted_with_an_out_of_range_expiry_is_not_a_traceback(emulator: Emulator) -> None:
    _saved(emulator)
    assert emulator.run(*ROW, "--delete").code == 0
    item = dict(emulator.client("dynamodb").get_item(TableName="safedb", Key=KEY)["Item"])
    item["ExpiresAt"] = {"N": "9" * 30}
    _plant(emulator, item)
    result = emulator.run("--list", "--deleted")
    assert result.code == 0, result.err
    assert result.out.rstrip("\n").split("\t")[-1] == "9" * 30


def test_list_deleted_json_does_not_call_a_deleted_secret_legacy(emulator: Emulator) -> None:
    _saved(emulator)
    emulator.run("-u", "bob", "-e", "billing", "--save", "-", stdin="x")
    assert emulator.run(*ROW, "--delete").code == 0
    deleted = json.loads(emulator.run("--list", "--deleted", "--json").out)
    assert [(row["user"], row["legacy"]) for row in deleted] == [("alice", False)]
    live = json.loads(emulator.run("--list", "--json").out)
    assert [(row["user"], row["legacy"]) for row in live] == [("bob", False)]
    assert emulator.run("--list", "--deleted").out.count("legacy") == 0
