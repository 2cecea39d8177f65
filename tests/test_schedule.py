"""Rotation schedules: RotateEvery and NotAfter as stored, --due and CloudChain.due (no KMS),
the schedule in --list and --history, and bad durations and dates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY_ALIAS, CallCounter

from cloudchain import CloudChain
from cloudchain.cli import main
from cloudchain.errors import ValidationError
from cloudchain.schedule import check_not_after, due_at, due_secrets, parse_not_after
from cloudchain.summary import RowSummary

ROW = ["-e", "billing", "-u", "alice"]
DAY = 86_400
NOW = datetime(2027, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def cli(chain: CloudChain, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudChain]:
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    yield chain


def raw(dynamodb: Any, service: str = "billing", user: str = "alice") -> dict[str, Any]:
    key = {"Service": {"S": service}, "Username": {"S": user}}
    item: dict[str, Any] = dynamodb.get_item(TableName="safedb", Key=key)["Item"]
    return item


def summary(user: str, saved: datetime | None, every: int | None = None,
            not_after: str | None = None, deleted: bool = False) -> RowSummary:  # fmt: skip
    return RowSummary(
        service="s", user=user, legacy=False, deleted=deleted,
        saved_at=saved.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if saved else None, saved_by=None,
        expires_at=None, tags={}, version=3, rotate_every=every, not_after=not_after,
    )  # fmt: skip


def test_due_is_the_earlier_of_period_and_expiry_oldest_first_and_soon_within_the_window() -> None:
    rows = [
        summary("none", NOW - timedelta(days=400)),  # no schedule: never due
        summary("fresh", NOW - timedelta(days=1), every=30 * DAY),
        summary("period", NOW - timedelta(days=31), every=30 * DAY),
        summary("exactly", NOW - timedelta(days=30), every=30 * DAY),  # <= now: due
        summary("expiry", NOW, every=30 * DAY, not_after="2027-02-01T00:00:00Z"),
        summary("soon", NOW - timedelta(days=25), every=30 * DAY),
        summary("gone", NOW - timedelta(days=90), every=DAY, deleted=True),
        summary("unknown-age", None, every=DAY),
    ]
    found = due_secrets(rows, within=7 * DAY, now=NOW)
    assert [(d.user, d.why, d.due) for d in found] == [
        ("unknown-age", "period", True),
        ("expiry", "not-after", True),
        ("period", "period", True),
        ("exactly", "period", True),
        ("soon", "period", False),
    ]
    assert found[2].due_at.startswith("2027-02-28") and found[2].version == 3
    assert [d.user for d in due_secrets(rows, within=1, now=NOW)][-1] == "exactly"
    assert len(due_secrets(rows, within=1e18, now=NOW)) == 6  # past the calendar: all


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("2027-01-31", "2027-01-31T00:00:00Z"),
        ("2027-01-31T12:30:00Z", "2027-01-31T12:30:00Z"),
        ("2027-01-31T12:30", "2027-01-31T12:30:00Z"),
        ("2027-01-31T14:30:00+02:00", "2027-01-31T12:30:00Z"),
        ("2001-01-01", "2001-01-01T00:00:00Z"),  # the past is allowed: simply due
        ("off", None),
    ],
)
def test_not_after_takes_an_iso_date_or_date_time_in_utc(text: str, stored: str | None) -> None:
    assert parse_not_after(text) == stored


def test_a_not_after_before_the_year_1000_is_stored_as_iso_and_is_due() -> None:
    # The CLI parses the flag, then the library parses what it made again: an unpadded year
    # (999-01-01T00:00:00Z, strftime's %Y) was no ISO date, so a valid past date was refused
    # under the library's name (not_after) and a datetime was stored unreadable.
    assert parse_not_after("0999-01-01") == "0999-01-01T00:00:00Z"
    assert check_not_after(parse_not_after("0999-01-01")) == "0999-01-01T00:00:00Z"
    assert check_not_after(datetime(999, 1, 1)) == "0999-01-01T00:00:00Z"
    assert due_at(None, None, "0999-01-01T00:00:00Z") == (
        datetime(999, 1, 1, tzinfo=timezone.utc),
        "not-after",
    )


def test_schedule_is_stored_survives_saves_rollbacks_and_undelete_and_expiry_moves_with_value(
    cli: CloudChain, dynamodb: Any
) -> None:
    cli.save("billing", "alice", "one", rotate_every=30 * DAY, not_after="2027-06-01")
    item = raw(dynamodb)
    assert item["RotateEvery"] == {"N": str(30 * DAY)}
    assert item["NotAfter"] == {"S": "2027-06-01T00:00:00Z"}
    cli.save("billing", "alice", "two")  # a new value: no expiry of its own; the period stays
    item = raw(dynamodb)
    assert item["RotateEvery"] == {"N": str(30 * DAY)} and "NotAfter" not in item
    assert item["History"]["L"][0]["M"]["NotAfter"] == {"S": "2027-06-01T00:00:00Z"}
    assert cli.rollback("billing", "alice", 1) == 3  # the old value comes back with its expiry
    item = raw(dynamodb)
    assert item["NotAfter"] == {"S": "2027-06-01T00:00:00Z"} and "RotateEvery" in item
    cli.delete("billing", "alice")
    assert cli.undelete("billing", "alice") == 5
    item = raw(dynamodb)
    assert item["RotateEvery"] == {"N": str(30 * DAY)}
    assert item["NotAfter"] == {"S": "2027-06-01T00:00:00Z"}
    assert cli.schedule("billing", "alice") == (30 * DAY, "2027-06-01T00:00:00Z")
    cli.save("billing", "alice", "six", rotate_every=None)  # None clears it
    assert "RotateEvery" not in raw(dynamodb)


def test_a_schedule_change_alone_is_a_conditional_write_with_no_new_version(
    cli: CloudChain, dynamodb: Any, calls: CallCounter
) -> None:
    cli.save("billing", "alice", "one")
    before = raw(dynamodb)
    assert "RotateEvery" not in before and "NotAfter" not in before
    start = len(calls.operations)
    assert cli.set_schedule("billing", "alice", rotate_every=12 * 3600) == (12 * 3600, None)
    assert [op for op in calls.operations[start:] if op != "GetCallerIdentity"] == [
        "GetItem", "PutItem",
    ]  # fmt: skip
    after = raw(dynamodb)
    assert after["Version"] == before["Version"] and after["Secret"] == before["Secret"]
    assert int(after["Revision"]["N"]) == int(before["Revision"]["N"]) + 1
    start = len(calls.operations)
    assert cli.set_schedule("billing", "alice", rotate_every=12 * 3600) == (12 * 3600, None)
    assert "PutItem" not in calls.operations[start:]  # nothing to change: nothing written
    assert cli.read("billing", "alice") == "one"


def test_rotate_every_setting_is_a_default_for_new_secrets_only(
    cli: CloudChain, dynamodb: Any, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:  # fmt: skip
    cli.save("billing", "old", "v")
    monkeypatch.setenv("CLOUDCHAIN_ROTATE_EVERY", "90d")
    for user in ("old", "new"):
        assert main(["-e", "billing", "-u", user, "--save", "v"]) == 0
    assert "RotateEvery" not in raw(dynamodb, user="old")
    assert raw(dynamodb, user="new")["RotateEvery"] == {"N": str(90 * DAY)}
    # --import creates secrets too: the new ones get the period, the existing ones keep theirs.
    source = tmp_path / "in.json"
    source.write_text('{"old": "w", "imported": "w"}')
    assert main(["-e", "billing", "--import", str(source)]) == 0
    assert "RotateEvery" not in raw(dynamodb, user="old")
    assert raw(dynamodb, user="imported")["RotateEvery"] == {"N": str(90 * DAY)}
    monkeypatch.setenv("CLOUDCHAIN_ROTATE_EVERY", "0d")
    assert main(["--list"]) == 1
    assert "rotate_every" in capsys.readouterr().err


def test_due_exits_5_when_something_is_due_0_when_only_soon_and_makes_no_kms_call(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    soon = (datetime.now(timezone.utc) + timedelta(days=3)).strftime("%Y-%m-%d")
    assert main(["-e", "billing", "-u", "soon", "--save", "v", "--not-after", soon]) == 0
    assert main(["-e", "web", "-u", "never", "--save", "v"]) == 0
    assert main(["-e", "web", "-u", "far", "--save", "v", "--rotate-every", "90d"]) == 0
    capsys.readouterr()
    assert main(["--due", "--within", "1d"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["--due"]) == 0  # soon due (7 days by default) is listed, but exit 0
    line = capsys.readouterr().out.splitlines()
    assert len(line) == 1 and line[0].startswith("billing\tsoon\t1\t")
    assert line[0].endswith(f"\t{soon}T00:00:00Z\tnot-after\tsoon")
    assert main(["-e", "web", "-u", "old", "--save", "v", "--not-after", "2020-02-02"]) == 0
    assert main(["-e", "web", "-u", "old", "--tag", "team=a", "--tags"]) == 0
    capsys.readouterr()
    calls = CallCounter(cli._dynamodb, cli._kms)
    found = cli.due(within=7 * DAY)
    assert [(d.service, d.user, d.due) for d in found] == [("web", "old", True),
                                                           ("billing", "soon", False)]  # fmt: skip
    assert calls.operations == ["Scan"]  # one projection read; no KMS
    calls.operations.clear()
    assert [d.user for d in cli.due("web")] == ["old"]
    assert calls.operations == ["Query"]
    assert main(["--due", "--json", "--tag", "team=a"]) == 5
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"service": "web", "user": "old", "version": 1,
                     "saved_at": rows[0]["saved_at"], "due_at": "2020-02-02T00:00:00Z",
                     "why": "not-after", "due": True}]  # fmt: skip
    assert main(["--due", "-e", "billing"]) == 0


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        ([*ROW, "--save", "v", "--rotate-every", "0d"], "--rotate-every"),
        ([*ROW, "--save", "v", "--rotate-every", "-1d"], "--rotate-every"),
        ([*ROW, "--save", "v", "--rotate-every", "1x"], "--rotate-every"),
        # More digits than DynamoDB's numbers hold: it was written (or refused by AWS), and
        # the service's listings then failed.
        ([*ROW, "--save", "v", "--rotate-every", "9" * 45 + "w"], "--rotate-every"),
        ([*ROW, "--rotate-every", "36501d"], "--rotate-every"),
        ([*ROW, "--save", "v", "--not-after", "2026-13-01"], "--not-after"),
        ([*ROW, "--rotate-every", "30"], "--rotate-every"),
        ([*ROW, "--not-after", "soon"], "--not-after"),
        ([*ROW, "--not-after", "9999-12-31T23:00:00-02:00"], "--not-after"),
        (["--due", "--within", "0d"], "--within"),
        (["--due", "--rotate-every", "1d"], "--rotate-every"),
        (["-e", "billing", "--rotate-every", "1d"], "-u/--user"),
    ],
)
def test_bad_durations_and_dates_are_one_line_usage_errors_naming_the_flag_before_aws(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], flag: str
) -> None:
    monkeypatch.setenv("CLOUDCHAIN_ENDPOINT_URL", "http://127.0.0.1:9")  # reaching it: exit 1
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    monkeypatch.setenv("CLOUDCHAIN_MAX_ATTEMPTS", "1")
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("cchain: error:")]
    assert len(errors) == 1 and flag in errors[0] and "Traceback" not in err, err


def test_library_refuses_a_bad_schedule_before_any_aws_call(cli: CloudChain) -> None:
    calls = CallCounter(cli._dynamodb, cli._kms)
    for bad in (
        {"rotate_every": 0},
        {"rotate_every": float("inf")},
        {"rotate_every": 10**50},
        {"not_after": "2027-02-30"},
    ):
        with pytest.raises(ValidationError):
            cli.save("billing", "alice", "v", **bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        cli.due(within=-1)
    assert calls.operations == []


def test_list_and_history_show_the_schedule_and_rows_without_one_are_unchanged(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.save("billing", "plain", "v")
    cli.save("billing", "alice", "v1", not_after="2030-01-01")
    cli.save("billing", "alice", "v2")
    assert main([*ROW, "--rotate-every", "30d"]) == 0
    capsys.readouterr()
    assert main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "billing\tplain"
    assert lines[0].startswith("billing\talice\trotate-every=30d due-at=")
    assert main(["--list", "--json"]) == 0
    alice, plain = json.loads(capsys.readouterr().out)
    assert set(plain) == {"service", "user", "legacy", "tags"}
    assert alice["rotate_every"] == 30 * DAY and alice["not_after"] is None
    saved = datetime.fromisoformat(cli.history("billing", "alice")[0].saved_at.rstrip("Z"))  # type: ignore[union-attr]
    due = (saved + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert alice["due_at"] == due
    assert main([*ROW, "--history"]) == 0
    current, older = capsys.readouterr().out.splitlines()
    assert current.endswith(f"\trotate-every=30d due-at={due}")
    assert older.endswith("\tnot-after=2030-01-01T00:00:00Z")
    assert main([*ROW, "--history", "--json"]) == 0
    versions = json.loads(capsys.readouterr().out)
    assert versions[0]["rotate_every"] == 30 * DAY and versions[0]["due_at"] == due
    assert versions[1]["not_after"] == "2030-01-01T00:00:00Z" and "due_at" in versions[1]
    assert main([*ROW, "--schedule", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"rotate_every": 30 * DAY, "not_after": None}


def test_agent_gauge_counts_due_secrets_of_prefetched_services_and_doctor_counts_a_services(
    cli: CloudChain,
) -> None:
    from cloudchain.agent.cached import CachedSecrets
    from cloudchain.agent.routes import Agent
    from cloudchain.doctor import Check, Doctor, examine

    cli.save("billing", "old", "v", not_after="2020-01-01")
    cli.save("billing", "later", "v", not_after="2099-01-01")
    cli.save("billing", "plain", "v")
    cli.save("web", "old", "v", not_after="2020-01-01")  # not prefetched: not counted
    cached = CachedSecrets(cli, ttl=60, stale_if_error=0, max_entries=10, prefetch=["billing"])
    calls = CallCounter(cli._dynamodb, cli._kms)
    cached.load("billing")
    # The change check's projection, the values, then the schedules' projection; no more KMS
    # calls than secrets.
    assert calls.operations.count("Query") == 3
    assert calls.operations.count("Decrypt") == 3
    answer = Agent(cached, None).metrics({})
    assert b"\ncloudchain_agent_due_secrets 1.0\n" in answer.body
    cli.set_schedule("billing", "later", not_after="2021-01-01")
    cached.load("billing")
    assert cached.due_now() == 2

    doctor = Doctor(overrides={}, service="billing", config=cli.config)
    results = examine(doctor, (Check("table", lambda d: "stand-in"),))
    assert results[-1].check == "due" and results[-1].status == "ok"
    assert results[-1].detail.startswith("2 secrets of billing due for rotation now, 0 more")
    assert (
        examine(Doctor(overrides={}, config=cli.config), (Check("table", lambda d: ""),))[-1].check
        == "table"
    )  # without -e, no due line


def test_a_schedule_on_a_reference_row_keeps_it_readable(
    cli: CloudChain, kms: Any, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64

    blob = kms.encrypt(KeyId=KEY_ALIAS, Plaintext=b"legacy", EncryptionContext={})
    secret = base64.b64encode(blob["CiphertextBlob"]).decode()
    reference = {"Service": {"S": "old"}, "Username": {"S": "u"}, "Secret": {"S": secret}}
    dynamodb.put_item(TableName="safedb", Item=reference)
    assert cli.due() == []  # no schedule, no SavedAt: not due, and not an error
    assert main(["-e", "old", "-u", "u", "--rotate-every", "30d"]) == 0
    assert capsys.readouterr().out == "rotate-every=30d\n"
    item = raw(dynamodb, "old", "u")
    assert item["RotateEvery"] == {"N": str(30 * DAY)} and "Context" in item  # bound to its row
    assert cli.read("old", "u") == "legacy"
    # Saved before versions recorded when: as old as can be, so due at once.
    assert [(d.user, d.due) for d in cli.due()] == [("u", True)]
    assert main(["--due", "-e", "old"]) == 5
    assert capsys.readouterr().out == "old\tu\t1\t-\t1970-01-31T00:00:00Z\tperiod\tdue\n"


def test_a_stored_not_after_with_control_characters_is_printed_escaped(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    # Whoever can write the table could put a terminal escape in NotAfter, which --list,
    # --history and --schedule printed as it was (saved-at, beside it, is escaped).
    cli.save("billing", "alice", "v", not_after="2030-01-01")
    cli._dynamodb.update_item(
        TableName="safedb",
        Key={"Service": {"S": "billing"}, "Username": {"S": "alice"}},
        UpdateExpression="SET NotAfter = :n",
        ExpressionAttributeValues={":n": {"S": "2030-01-01T00:00:00Z\x1b]0;owned\x07"}},
    )
    capsys.readouterr()
    for argv in (["--list"], [*ROW, "--history"], [*ROW, "--schedule"]):
        assert main(argv) == 0
        out = capsys.readouterr()
        assert "\x1b" not in out.out + out.err and "\\x1b]0;owned\\x07" in out.out + out.err


def test_the_agent_rereads_due_dates_before_its_horizon_passes_with_no_change(
    cli: CloudChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Due dates are read to DUE_HORIZON ahead and re-read at a change: a secret due past the
    # horizon, in a service that never changed, was never counted by a long-running agent.
    import time

    from cloudchain.agent import cached as cached_module
    from cloudchain.agent.cached import DUE_HORIZON, CachedSecrets

    cli.save("billing", "far", "v", rotate_every=400 * DAY)
    cached = CachedSecrets(cli, ttl=60, stale_if_error=0, max_entries=10, prefetch=["billing"])
    cached.load("billing")
    assert cached.due_dates["billing"] == []  # past the horizon
    calls = CallCounter(cli._dynamodb, cli._kms)
    cached.refresh_period()
    assert calls.operations == ["Query"]  # the check; nothing changed, nothing more
    later = time.monotonic() + DUE_HORIZON / 2 + 1
    monkeypatch.setattr(cached_module.time, "monotonic", lambda: later)
    cached.refresh_period()
    assert calls.operations == ["Query", "Query", "Query"]  # the check, then the due dates
