"""The cchain CLI in-process through main([...]) against moto: flags, input, output, exit codes."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY_ALIAS

from cloudchain import CloudChain
from cloudchain.cli import build_parser, main

ROW = ["-u", "alice", "-e", "billing"]


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes, tty: bool = False) -> None:
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    monkeypatch.setattr(stream, "isatty", lambda: tty)
    monkeypatch.setattr("sys.stdin", stream)


@pytest.fixture
def cli(chain: CloudChain, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    yield


def test_save_from_argv_then_read_prints_secret_and_newline(
    cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*ROW, "--save", "(*&*&*&^@#$)(_"]) == 0
    saved = capsys.readouterr()
    assert saved.out == ""
    assert "saved billing/alice" in saved.err
    assert "visible to other users" in saved.err
    assert main([*ROW, "--read"]) == 0
    read = capsys.readouterr()
    assert read.out == "(*&*&*&^@#$)(_\n"
    assert read.err == ""


def test_no_newline_flag(cli: None, capsys: pytest.CaptureFixture[str]) -> None:
    main([*ROW, "-s", "value"])
    capsys.readouterr()
    assert main([*ROW, "-r", "-n"]) == 0
    assert capsys.readouterr().out == "value"


@pytest.mark.parametrize(
    ("flag", "data", "expected"),
    [
        (["--save", "-"], b"from stdin\n", "from stdin"),
        (["--save"], b"no value reads stdin\n", "no value reads stdin"),
        (["--save", "-"], b"two newlines\n\n", "two newlines\n"),
        (["--save", "-"], b"crlf\r\n", "crlf"),
        (["--save", "-"], b"no newline", "no newline"),
        (["--save", "-"], "ünïcødé 🔐\n".encode(), "ünïcødé 🔐"),
        (
            ["--save", "-"],
            b" spaces and 'quotes' \"x\" $HOME\n",
            " spaces and 'quotes' \"x\" $HOME",
        ),
    ],
)
def test_save_reads_stdin_stripping_one_trailing_newline(
    cli: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: list[str],
    data: bytes,
    expected: str,
) -> None:
    _stdin(monkeypatch, data)
    assert main([*ROW, *flag]) == 0
    assert "visible to other users" not in capsys.readouterr().err
    assert CloudChain().read("billing", "alice") == expected


def test_stdin_that_is_not_utf8_is_refused(
    cli: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"\xff\xfe\n")
    assert main([*ROW, "--save", "-"]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_empty_stdin_is_refused(
    cli: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"\n")
    assert main([*ROW, "--save", "-"]) == 2
    assert "must not be empty" in capsys.readouterr().err


def _prompts(monkeypatch: pytest.MonkeyPatch, answers: list[str]) -> list[str]:
    asked: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        asked.append(prompt)
        return answers.pop(0)

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    return asked


def test_save_on_a_terminal_prompts_twice(
    cli: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"", tty=True)
    asked = _prompts(monkeypatch, ["typed", "typed"])
    assert main([*ROW, "--save"]) == 0
    assert asked == ["Secret: ", "Repeat secret: "]
    assert CloudChain().read("billing", "alice") == "typed"


def test_prompt_mismatch_saves_nothing(
    cli: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"", tty=True)
    _prompts(monkeypatch, ["one", "two"])
    assert main([*ROW, "--save"]) == 2
    err = capsys.readouterr().err
    assert "do not match" in err
    assert "one" not in err.replace("done", "")
    assert list(CloudChain().list()) == []


def test_list_plain_and_json(cli: None, capsys: pytest.CaptureFixture[str]) -> None:
    for service, user in [("web", "b"), ("billing", "z"), ("billing", "a")]:
        main(["-u", user, "-e", service, "-s", "v"])
    capsys.readouterr()
    assert main(["--list"]) == 0
    assert capsys.readouterr().out == "billing\ta\nbilling\tz\nweb\tb\n"
    assert main(["--list", "-e", "billing", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"service": "billing", "user": "a", "legacy": False, "tags": {}},
        {"service": "billing", "user": "z", "legacy": False, "tags": {}},
    ]
    assert main(["-l", "-e", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_delete_then_delete_again_exits_3(cli: None, capsys: pytest.CaptureFixture[str]) -> None:
    main([*ROW, "-s", "v"])
    assert main([*ROW, "--delete"]) == 0
    assert main([*ROW, "-d"]) == 3
    assert capsys.readouterr().err.splitlines()[-1] == (
        "cchain: error: no secret for billing/alice in table 'safedb'"
    )


def test_read_missing_exits_3_with_one_line_and_no_traceback(
    cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*ROW, "--read"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("cchain: error: ")
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--read"],
        ["-u", "alice", "--read"],
        ["-e", "billing", "--save", "x"],
        ["-e", "billing", "--delete"],
        [*ROW, "--read", "--list"],
        [*ROW, "--bogus"],
        [*ROW, "--read", "--json"],
        ["--list", "-n"],
        [*ROW, "--read", "--create-key"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["-u", "", "-e", "billing", "--read"],
        ["-u", "alice", "-e", "", "--save", "x"],
        [*ROW, "--save", "x" * (384 * 1024 + 1)],
    ],
)
def test_invalid_input_exits_2_before_any_aws_call(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # No moto here and an endpoint nobody listens on: reaching AWS would exit 1, not 2.
    assert main([*argv, "--endpoint-url", "http://127.0.0.1:9", "--key-alias", "alias/k"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("cchain: error: ")
    assert "xxxx" not in err


def test_save_without_key_alias_exits_1_saying_where_to_set_it(
    chain: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*ROW, "-s", "x"]) == 1
    assert "CLOUDCHAIN_KEY_ALIAS" in capsys.readouterr().err


def test_integrity_failure_exits_1(
    cli: None, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["-u", "alice", "-e", "billing", "-s", "alice-secret"])
    item = dynamodb.get_item(
        TableName="safedb", Key={"Service": {"S": "billing"}, "Username": {"S": "alice"}}
    )["Item"]
    item["Username"] = {"S": "mallory"}
    dynamodb.put_item(TableName="safedb", Item=item)
    capsys.readouterr()
    assert main(["-u", "mallory", "-e", "billing", "-r"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "does not decrypt for this row" in captured.err
    assert "alice-secret" not in captured.err


def test_debug_shows_a_traceback_but_never_the_secret(
    chain: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*ROW, "--save", "hunter2-secret", "--key-alias", "alias/missing", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "alias/missing" in err
    assert "hunter2-secret" not in err.replace("--save", "")
    assert "aHVudGVyMi1zZWNyZXQ" not in err  # nor its base64


def test_setup_creates_table_and_key_and_is_idempotent(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--setup", "--create-key", "--key-alias", "alias/new", "--table", "t1"]) == 0
    assert capsys.readouterr().err == (
        "cchain: us-east-1 (home): table 't1' created; key alias/new created\n"
    )
    assert main(["--setup", "--create-key", "--key-alias", "alias/new", "--table", "t1"]) == 0
    assert capsys.readouterr().err == (
        "cchain: us-east-1 (home): table 't1' already exists; key alias/new already exists\n"
        "cchain: nothing to change\n"
    )


def test_flags_beat_environment_and_file(
    chain: CloudChain, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    CloudChain(tablename="flag-table").setup()
    (clean_env / ".cchainrc").write_text("[dynamo]\ntablename = file-table\n")
    monkeypatch.setenv("CLOUDCHAIN_TABLE", "env-table")
    assert main([*ROW, "-s", "x", "--table", "flag-table", "--key-alias", KEY_ALIAS]) == 0
    assert [e.user for e in CloudChain(tablename="flag-table").list()] == ["alice"]


def test_config_flag_selects_the_file(chain: CloudChain, tmp_path: Path) -> None:
    rc = tmp_path / "custom.rc"
    rc.write_text(f"keyalias = {KEY_ALIAS}\n")
    assert main([*ROW, "-s", "x", "--config", str(rc)]) == 0
    assert main([*ROW, "-r", "--config", str(tmp_path / "missing")]) == 1


def test_version_and_help_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("cchain 1.")
    assert main(["--help"]) == 0
    assert "exit codes" in capsys.readouterr().out


def test_every_flag_is_documented_in_the_cli_page() -> None:
    page = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    flags = [flag for action in build_parser()._actions for flag in action.option_strings]
    assert len(flags) > 60
    for flag in flags:
        assert re.search(rf"[`/ ]{re.escape(flag)}(?![\w-])", page), flag


def test_help_has_one_titled_section_per_purpose_and_ends_with_three_examples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    titles = [line[:-1] for line in text.splitlines() if line and line.endswith(":")
              and not line.startswith(" ")]  # fmt: skip
    assert len(titles) == len(set(titles)) >= 8, titles
    assert "options" not in titles
    examples = text.split("examples:\n", 1)[1].splitlines()
    assert len(examples) == 3 and all("cchain -" in line for line in examples)


def test_import_keeps_a_raw_crlf_inside_a_quoted_dotenv_value(cli: None, tmp_path: Path) -> None:
    path = tmp_path / "in.env"
    path.write_bytes(b'A="dos\r\nline"\r\nB=plain\r\n')
    assert main(["-e", "svc", "--import", str(path)]) == 0
    assert CloudChain().export("svc") == {"A": "dos\r\nline", "B": "plain"}


@pytest.mark.parametrize("action", [["-e", "web", "--export"], ["--render", "t.j2"]])
def test_an_empty_output_name_is_a_usage_error_not_stdout(
    capsys: pytest.CaptureFixture[str], action: list[str]
) -> None:
    assert main([*action, "-o", ""]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "-o/--output needs a file name" in err
