"""Generated values: the generator's classes and length over many draws, and --save --generate."""

from __future__ import annotations

import string
from collections.abc import Iterator

import pytest
from helpers import KEY_ALIAS

from cloudchain import CloudChain
from cloudchain.cli import main
from cloudchain.errors import ValidationError
from cloudchain.generate import PUNCTUATION, PasswordSpec, generate

ROW = ["-u", "alice", "-e", "billing"]
DRAWS = 400


def test_default_values_have_every_class_and_32_characters_over_many_draws() -> None:
    values = [generate(PasswordSpec()) for _ in range(DRAWS)]
    assert len(set(values)) == DRAWS  # two generations differ
    for value in values:
        assert len(value) == 32
        assert any(c in string.ascii_uppercase for c in value)
        assert any(c in string.ascii_lowercase for c in value)
        assert any(c in string.digits for c in value)
        assert any(c in PUNCTUATION for c in value)
        assert " " not in value
    # Every character of the alphabet turns up: nothing is left out by mistake.
    assert set("".join(values)) == set(string.ascii_letters + string.digits + PUNCTUATION)


def test_excluded_characters_and_classes_never_appear_and_short_values_keep_each_class() -> None:
    spec = PasswordSpec(length=3, exclude_chars="abcXYZ012", punctuation=False)
    for _ in range(DRAWS):
        value = generate(spec)
        assert len(value) == 3
        assert not set(value) & set("abcXYZ012")
        assert {any(c in k for c in value) for k in
                (string.ascii_uppercase, string.ascii_lowercase, string.digits)} == {True}  # fmt: skip
        assert not set(value) & set(PUNCTUATION)


@pytest.mark.parametrize(
    ("spec", "alphabet"),
    [
        (PasswordSpec(charset="hex"), set("0123456789abcdef")),
        (PasswordSpec(charset="alnum", exclude_chars="0O1lI"),
         set(string.ascii_letters + string.digits) - set("0O1lI")),
        (PasswordSpec(charset="base64url"), set(string.ascii_letters + string.digits + "-_")),
        (PasswordSpec(length=64, numbers=False, punctuation=False, uppercase=False,
                      include_space=True), set(string.ascii_lowercase + " ")),
    ],
)  # fmt: skip
def test_charsets_and_space_draw_from_exactly_their_alphabet(
    spec: PasswordSpec, alphabet: set[str]
) -> None:
    drawn = set("".join(generate(spec) for _ in range(100)))
    assert drawn == alphabet


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (PasswordSpec(length=0), "--length"),
        (PasswordSpec(length=384 * 1024 + 1), "size limit"),
        (PasswordSpec(numbers=False, punctuation=False, uppercase=False, lowercase=False),
         "no character left"),
        (PasswordSpec(charset="hex", exclude_chars="0123456789abcdef"), "no character left"),
        (PasswordSpec(length=3), "--require-each-type"),
        (PasswordSpec(charset="hex", numbers=False), "--charset"),
    ],
)  # fmt: skip
def test_a_spec_no_value_can_satisfy_is_refused(spec: PasswordSpec, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        generate(spec)


def test_require_each_type_can_be_turned_off_for_a_short_value() -> None:
    assert len(generate(PasswordSpec(length=2, require_each_type=False))) == 2


@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint nothing listens on: a command that reached AWS would exit 1."""
    monkeypatch.setenv("CLOUDCHAIN_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    monkeypatch.setenv("CLOUDCHAIN_MAX_ATTEMPTS", "1")


@pytest.fixture
def cli(chain: CloudChain, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudChain]:
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    yield chain


def test_save_generate_stores_a_value_it_never_prints_and_show_prints_it_to_stdout_only(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*ROW, "--save", "--generate", "--length", "20", "--no-punctuation"]) == 0
    quiet = capsys.readouterr()
    value = cli.read("billing", "alice")
    assert isinstance(value, str) and len(value) == 20 and value.isalnum()
    assert quiet.out == "" and value not in quiet.err
    assert main([*ROW, "--save", "--generate", "--charset", "hex", "--show"]) == 0
    shown = capsys.readouterr()
    value = cli.read("billing", "alice")
    assert shown.out == value + "\n" and value not in shown.err
    assert len(value) == 32 and set(value) <= set("0123456789abcdef")


@pytest.mark.parametrize(
    "argv",
    [
        ["--save", "--generate", "--length", "0"],
        ["--save", "--generate", "--length", "393217"],
        ["--save", "--generate", "--no-numbers", "--no-punctuation", "--no-uppercase",
         "--no-lowercase"],
        ["--save", "--generate", "--length", "2"],
        ["--save", "--generate", "--charset", "hex", "--no-numbers"],
        ["--save", "--generate", "--charset", "b64"],
        ["--save", "--length", "8"],
        ["--save", "--show"],
        ["--save", "hunter2", "--generate"],
        ["--save", "-", "--generate"],
        ["--save", "--generate", "--binary"],
        ["--read", "--generate"],
    ],
)  # fmt: skip
def test_bad_generate_combinations_are_one_line_usage_errors_before_any_aws_call(
    nowhere: None, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main([*ROW, *argv]) == 2  # any AWS call would have failed: exit 1
    err = capsys.readouterr().err
    assert "cchain: error:" in err and "Traceback" not in err, err


def test_no_require_each_type_lets_a_value_be_shorter_than_its_classes(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*ROW, "--save", "--generate", "--length", "2", "--no-require-each-type", "--show"]
    assert main(argv) == 0
    assert len(capsys.readouterr().out) == 3


def test_a_generated_value_is_not_in_the_debug_log_or_any_message(
    cli: CloudChain, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    assert main([*ROW, "--save", "--generate", "--debug", "--comment", "made here"]) == 0
    value = cli.read("billing", "alice")
    assert isinstance(value, str)
    said = capsys.readouterr()
    logged = caplog.text + said.err + said.out
    assert value not in logged and value[:12] not in logged
    assert "saved billing/alice version 1" in said.err
