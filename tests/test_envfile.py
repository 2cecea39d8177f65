"""Variable names and the export/import formats, read back by python-dotenv and our parser."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dotenv import dotenv_values
from helpers import DOTENV_REFUSED, NASTY_VALUES
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudchain import CloudChainError, ValidationError
from cloudchain.envfile import (
    check_prefix,
    env_name,
    env_names,
    parse_dotenv,
    parse_import,
    render,
)
from cloudchain.formats import users_for_variables

NASTY = NASTY_VALUES


@pytest.mark.parametrize(
    ("user", "name"),
    [
        ("db-password", "DB_PASSWORD"),
        ("9lives", "_9LIVES"),
        ("api.key", "API_KEY"),
        ("Mixed_Case", "MIXED_CASE"),
        ("ünï", "_N_"),
        ("a b", "A_B"),
    ],
)
def test_env_name_mapping(user: str, name: str) -> None:
    assert env_name(user) == name


def test_prefix_is_prepended_and_checked() -> None:
    assert env_name("db-password", "APP_") == "APP_DB_PASSWORD"
    assert check_prefix("APP_") == "APP_"
    with pytest.raises(ValidationError):
        check_prefix("1APP")
    with pytest.raises(ValidationError):
        check_prefix("A-B")


def test_two_users_on_one_name_is_an_error_naming_both() -> None:
    with pytest.raises(CloudChainError, match=r"'DB_PASSWORD' and 'db-password'.*DB_PASSWORD"):
        env_names("billing", ["db-password", "DB_PASSWORD"])


def _names(secrets: dict[str, str]) -> dict[str, str]:
    return env_names("svc", list(secrets))


def test_json_is_sorted_raw_usernames() -> None:
    text = render("json", {"b-user": "2", "a-user": "1"}, {})
    assert list(json.loads(text)) == ["a-user", "b-user"]


def test_dotenv_reads_back_exactly_with_python_dotenv_and_our_parser() -> None:
    secrets = {k: v for k, v in NASTY.items() if k not in DOTENV_REFUSED}
    text = render("dotenv", secrets, _names(secrets))
    expected = {env_name(user): value for user, value in secrets.items()}
    assert dict(dotenv_values(stream=io.StringIO(text))) == expected
    assert parse_dotenv(text) == expected
    assert "${" not in text  # nothing a reader's environment could change


@pytest.mark.parametrize("user", sorted(DOTENV_REFUSED))
def test_dotenv_refuses_naming_the_variable_and_the_way_out(user: str) -> None:
    secrets = {user: NASTY[user]}
    with pytest.raises(CloudChainError, match=re.escape(DOTENV_REFUSED[user])) as info:
        render("dotenv", secrets, _names(secrets))
    assert f"{env_name(user)} (user {user!r}) holds" in str(info.value)
    assert "--format env or --format json" in str(info.value.hint)
    assert NASTY[user] not in str(info.value)


def test_backtick_alone_is_single_quoted_in_dotenv() -> None:
    secrets = {"backtick": NASTY["backtick"]}
    text = render("dotenv", secrets, _names(secrets))
    assert text == "BACKTICK='`id` and $(id)'\n"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("it's `id`", r"cannot write 1 secret as dotenv .*: MIXED \(user 'mixed'\) holds a quote"),
        ("dos\r\nline", "MIXED \\(user 'mixed'\\) holds a carriage return"),
    ],
)
def test_dotenv_refuses_what_sh_and_dotenv_cannot_both_read(value: str, message: str) -> None:
    secrets = {"mixed": value}
    with pytest.raises(CloudChainError, match=message):
        render("dotenv", secrets, _names(secrets))


@pytest.mark.parametrize("fmt", ["dotenv", "env"])
def test_nul_is_refused_in_variable_formats(fmt: str) -> None:
    with pytest.raises(CloudChainError, match="NUL"):
        render(fmt, {"x": "a\0b"}, {"x": "X"})


def test_env_format_single_quotes_everything() -> None:
    assert render("env", {"a": "it's $HOME"}, {"a": "A"}) == "export A='it'\\''s $HOME'\n"


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), min_size=1))
def test_any_dotenv_value_we_write_reads_back_in_python_dotenv(value: str) -> None:
    try:
        text = render("dotenv", {"u": value}, {"u": "U"})
    except CloudChainError:
        # The documented rule (cloudchain.formats.dotenv), and nothing else, refuses a value.
        quoted = "'" in value or "\\" in value
        assert "\r" in value or "${" in value or (quoted and ("$" in value or "`" in value))
        return
    assert dotenv_values(stream=io.StringIO(text)) == {"U": value}
    assert parse_dotenv(text) == {"U": value}


def test_parse_dotenv_handles_comments_export_and_unquoted_values() -> None:
    text = (
        "# a comment\n\nexport A=plain value # trailing comment\n"
        "B='single \\' quote'\nC=\"multi\nline\"\nD=${A}-x\nE=${NOPE:-fallback}\n"
    )
    assert parse_dotenv(text) == {
        "A": "plain value",
        "B": "single ' quote",
        "C": "multi\nline",
        "D": "plain value-x",
        "E": "fallback",
    }


def test_parse_dotenv_never_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAKY", "from-env")
    assert parse_dotenv("A=${LEAKY}\n") == {"A": ""}


@pytest.mark.parametrize("text", ["not a binding\n", "A='unterminated\n", "A='x' trailing\n"])
def test_bad_dotenv_is_a_validation_error(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_dotenv(text)


def test_parse_import_detects_json_and_dotenv() -> None:
    assert parse_import('  {"db-password": "x"}') == {"db-password": "x"}
    assert parse_import("DB=x\n") == {"DB": "x"}
    assert parse_import('{"a": "b"}', "json") == {"a": "b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ("[1]", "JSON object"), ('{"a": 1}', "'a' is not a string")],
)
def test_bad_json_import_is_a_validation_error(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_import(text, "json")


@pytest.mark.parametrize(
    "line",
    [
        "A=" + " " * 40_000 + "x",  # quadratic for the regex \\s+#.* that parsed comments
        "A=" + "a " * 500_000 + "# comment",
        "A=" + "${" * 500_000,  # quadratic for a regex expanding ${NAME}
        'A="' + "x" * 1_000_000 + '"',
        "A='" + "\\'" * 500_000 + "'",
    ],
)
def test_parsing_takes_linear_time_on_a_one_megabyte_line(line: str) -> None:
    started = time.perf_counter()
    parse_dotenv(line + "\n")
    assert time.perf_counter() - started < 1.0


def test_render_names_every_value_it_refuses_in_one_error_for_the_agent_too() -> None:
    secrets: dict[str, str | bytes] = {"cert": b"\x00", "a": "${X}", "b": "ok", "c": "x\ry"}
    with pytest.raises(CloudChainError) as info:
        render("dotenv", secrets, env_names("svc", secrets))
    message = str(info.value)
    assert message.startswith("cannot write 3 secrets as dotenv")
    assert "A (user 'a') holds '${'" in message
    assert "C (user 'c') holds a carriage return" in message
    assert "CERT (user 'cert') is a binary secret" in message
    assert "\n" not in message and "${X}" not in message
    assert info.value.hint is not None and "--skip-unrepresentable" in info.value.hint


def test_every_group_of_users_on_one_name_is_named_at_once() -> None:
    with pytest.raises(CloudChainError) as info:
        env_names("app", ["a-b", "A_B", "a.b", "x", "c-d", "C_D"])
    assert str(info.value) == (
        "users 'A_B', 'a-b' and 'a.b' of service app all map to the variable A_B; "
        "users 'C_D' and 'c-d' of service app both map to the variable C_D; "
        "rename all but one of each"
    )


TRAILING_BACKSLASHES = ["C:\\dir\\", "it's\\", 'say "\\"\\', "\\", "two\\\\", "a\nb\\"]


def test_a_value_ending_in_a_backslash_reads_back_in_dash_bash_and_python_dotenv(
    tmp_path: Path,
) -> None:
    secrets = {f"v{n}": value for n, value in enumerate(TRAILING_BACKSLASHES)}
    names = env_names("svc", secrets)
    text = render("dotenv", secrets, names)
    expected = {names[user]: value for user, value in secrets.items()}
    path = tmp_path / "app.env"
    path.write_text(text + "AFTER='sentinel'\n")  # a misread would swallow the next line
    expected["AFTER"] = "sentinel"
    assert dict(dotenv_values(path)) == expected
    assert parse_dotenv(path.read_text()) == expected
    printer = "import json, os, sys; print(json.dumps({k: os.environ[k] for k in sys.argv[1:]}))"
    for shell in ("dash", "bash"):
        proc = subprocess.run(
            [shell, "-c", 'set -a; . "$1"; shift; exec "$@"', shell, str(path), sys.executable,
             "-c", printer, *expected],
            capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]},
        )  # fmt: skip
        assert json.loads(proc.stdout) == expected, shell


OLDEST_DOTENV = "1.2.3"


def test_oldest_python_dotenv_reading_our_dotenv_is_pinned_installed_and_documented() -> None:
    root = Path(__file__).parents[1]
    assert f'"python-dotenv>={OLDEST_DOTENV}"' in (root / "setup.py").read_text()
    installed = tuple(int(part) for part in importlib.metadata.version("python-dotenv").split("."))
    assert installed >= tuple(int(part) for part in OLDEST_DOTENV.split("."))
    assert f"python-dotenv {OLDEST_DOTENV} or later" in (root / "docs/operations.md").read_text()


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
        st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), min_size=1),
        min_size=1,
        max_size=5,
    )
)
def test_env_export_reads_back_through_the_env_import_onto_the_same_users(
    secrets: dict[str, str],
) -> None:
    names = env_names("svc", secrets, "APP_")
    variables = parse_import(render("env", secrets, names), "env")
    users = users_for_variables("svc", variables, secrets, "APP_")
    assert {users[name]: value for name, value in variables.items()} == secrets
