"""--export, --exec and --import through main([...]) on moto: option order after --exec, values
a format cannot carry, binary secrets as base64, and the round trip of an export."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dotenv import dotenv_values
from helpers import KEY_ALIAS

from cloudchain import CloudChain
from cloudchain.cli import main


@pytest.fixture
def cli(chain: CloudChain, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudChain]:
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    yield chain


class Execs:
    """Stands in for os.execve: records what --exec would run, and with which environment."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], dict[str, str]]] = []

    def __call__(self, program: str, argv: list[str], env: dict[str, str]) -> None:
        self.calls.append((program, list(argv), dict(env)))


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> Execs:
    recorder = Execs()
    monkeypatch.setattr(os, "execve", recorder)
    return recorder


def _lines(text: str) -> list[str]:
    return text.splitlines()


# -- cchain's own options after --exec ---------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--exec", "--pristine", "--", "env"], "--pristine"),
        (["--exec", "--", "--pristine", "env"], "--pristine"),
        (["--exec", "--pristine", "env"], "--pristine"),
        (["--exec", "--prefix=APP_", "--tag", "a=b", "--", "env"], "--prefix --tag"),
        (["--exec", "--prist", "--", "env"], "--prist"),  # an abbreviation argparse would take
        (["--exec", "-u", "x", "--", "env"], "-u"),
        (["--exec", "--binary", "base64", "--", "env"], "--binary"),
    ],
)
def test_cchain_options_after_exec_are_a_usage_error_saying_where_they_go(
    cli: CloudChain,
    execs: Execs,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    named: str,
) -> None:
    cli.save("web", "token", "t0k3n")
    assert main(["-e", "web", *argv]) == 2
    err = capsys.readouterr().err
    assert f"cchain: error: {named} after --exec would be taken as the command" in err
    assert "put cchain's options before --exec" in err
    assert "command not found" not in err
    assert execs.calls == []


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["--exec", "--", "env"], ["env"]),
        (["--exec", "env", "FOO"], ["env", "FOO"]),
        (["--exec", "--", "grep", "-e", "x"], ["grep", "-e", "x"]),  # the command's own -e
        (["--pristine", "--exec", "--", "env", "--pristine"], ["env", "--pristine"]),
    ],
)
def test_exec_commands_written_as_before_still_run(
    cli: CloudChain, execs: Execs, argv: list[str], command: list[str]
) -> None:
    cli.save("web", "token", "t0k3n")
    assert main(["-e", "web", *argv]) == 0
    [(_, ran, env)] = execs.calls
    assert ran == command
    assert env["TOKEN"] == "t0k3n"


# -- values a format cannot carry ----------------------------------------------------------------

UNREPRESENTABLE = {"cert": b"\x00\x01binary", "dollar": "${HOME}", "dos": "a\r\nb"}


@pytest.fixture
def mixed(cli: CloudChain) -> CloudChain:
    for user, value in {**UNREPRESENTABLE, "db-password": "hunter2", "plain": "ok"}.items():
        cli.save("mix", user, value)
    return cli


def test_dotenv_export_names_every_value_it_cannot_carry_at_once(
    mixed: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-e", "mix", "--export", "--format", "dotenv"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    error, hint = _lines(err)
    assert error.startswith("cchain: error: cannot write 3 secrets as dotenv that sh, bash and ")
    for part in ("CERT (user 'cert') is a binary secret", "DOLLAR (user 'dollar') holds '${'",
                 "DOS (user 'dos') holds a carriage return"):  # fmt: skip
        assert part in error
    assert hint == (
        "cchain: hint: use --format env or --format json, --binary base64 for binary secrets, "
        "or --skip-unrepresentable to leave them out"
    )
    assert "HOME}" not in err and "hunter2" not in err


@pytest.mark.parametrize("fmt", ["dotenv", "env"])
def test_skip_unrepresentable_exports_the_rest_with_one_warning(
    mixed: CloudChain, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    assert main(["-e", "mix", "--export", "--format", fmt, "--skip-unrepresentable"]) == 0
    out, err = capsys.readouterr()
    skipped = ["CERT"] if fmt == "env" else ["CERT", "DOLLAR", "DOS"]
    [warning] = _lines(err)
    assert warning.startswith(f"cchain: warning: left out {len(skipped)} secrets of mix ")
    assert all(f"{name} (user '{name.lower()}')" in warning for name in skipped)
    if fmt == "dotenv":
        assert dict(dotenv_values(stream=io.StringIO(out))) == {
            "DB_PASSWORD": "hunter2",
            "PLAIN": "ok",
        }
    else:
        assert "export DOLLAR='${HOME}'\n" in out and "CERT" not in out


def test_exec_skips_what_no_environment_variable_can_hold(
    mixed: CloudChain, execs: Execs, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed.save("mix", "nul", "a\0b")
    assert main(["-e", "mix", "--exec", "--", "true"]) == 1
    error, hint = _lines(capsys.readouterr().err)
    assert "cannot write 2 secrets in the environment: CERT (user 'cert') is a binary" in error
    assert "NUL (user 'nul') holds a NUL character" in error
    assert hint == (
        "cchain: hint: use --binary base64 for binary secrets, "
        "or --skip-unrepresentable to leave them out"
    )
    assert execs.calls == []
    assert main(["-e", "mix", "--skip-unrepresentable", "--exec", "--", "true"]) == 0
    [(_, _, env)] = execs.calls
    assert "CERT" not in env and "NUL" not in env
    assert (env["DOLLAR"], env["DOS"], env["DB_PASSWORD"]) == ("${HOME}", "a\r\nb", "hunter2")
    [warning] = _lines(capsys.readouterr().err)
    assert warning.startswith("cchain: warning: left out 2 secrets of mix")


# -- binary secrets as base64 --------------------------------------------------------------------


def test_binary_base64_exports_binary_secrets_as_name_b64(
    cli: CloudChain, execs: Execs, capsys: pytest.CaptureFixture[str]
) -> None:
    blob = bytes(range(256))
    cli.save("bin", "cert", blob)
    cli.save("bin", "token", "t0k3n")
    encoded = base64.b64encode(blob).decode()
    assert main(["-e", "bin", "--export", "--format", "dotenv", "--binary", "base64"]) == 0
    out = capsys.readouterr().out
    assert dotenv_values(stream=io.StringIO(out)) == {"CERT_B64": encoded, "TOKEN": "t0k3n"}
    assert main(["-e", "bin", "--export", "--format", "env", "--binary", "base64"]) == 0
    assert capsys.readouterr().out == f"export CERT_B64='{encoded}'\nexport TOKEN='t0k3n'\n"
    assert main(["-e", "bin", "--binary", "base64", "--exec", "--", "true"]) == 0
    [(_, _, env)] = execs.calls
    assert base64.b64decode(env["CERT_B64"]) == blob and "CERT" not in env
    # json has always carried binary secrets as {"base64": ...}: --binary changes nothing there
    assert main(["-e", "bin", "--export", "--binary", "base64"]) == 0
    assert json.loads(capsys.readouterr().out)["cert"] == {"base64": encoded}


def test_a_base64_name_taken_by_another_secret_is_refused_naming_both(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.save("bin", "cert", b"\x00")
    cli.save("bin", "cert_b64", "text")
    assert main(["-e", "bin", "--export", "--format", "env", "--binary", "base64"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "users 'cert' and 'cert_b64' of service bin both map to the variable CERT_B64" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-e", "s", "--export", "--binary"], "--export --binary needs its encoding"),
        (["-e", "s", "--binary", "--exec", "--", "env"], "--exec --binary needs its encoding"),
        (["-u", "u", "-e", "s", "--save", "-", "--binary", "base64"], "--binary base64 goes"),
        (["-e", "s", "--export", "--binary", "hex"], "invalid choice: 'hex'"),
        (["-u", "u", "-e", "s", "--read", "--skip-unrepresentable"], "goes with --export or"),
    ],
)
def test_binary_and_skip_out_of_place_are_usage_errors(
    cli: CloudChain, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# -- the round trip: export, then import ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["dotenv", "env"])
@pytest.mark.parametrize("prefix", [[], ["--prefix", "APP_"]])
def test_importing_an_export_writes_onto_the_users_it_came_from(
    cli: CloudChain,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    fmt: str,
    prefix: list[str],
) -> None:
    original = {"alice": "a1", "db-password": 'it\'s \\ "q"', "9lives": "x", "NEW_ONE": "n"}
    for user, value in original.items():
        cli.save("app", user, value)
    assert main(["-e", "app", "--export", "--format", fmt, *prefix]) == 0
    text = capsys.readouterr().out
    name = "APP_ALICE" if prefix else "ALICE"
    path = tmp_path / "app.env"
    path.write_text(text.replace("'a1'", "'a2'"))
    assert main(["-e", "app", "--import", str(path), "--format", fmt, *prefix, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert out == f"change\talice\tfrom {name}\n"
    assert "would be 0 created, 1 changed, 3 unchanged" in err
    assert main(["-e", "app", "--import", str(path), "--format", fmt, *prefix, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == ["alice"]
    assert report["mapped"][name] == "alice"
    assert sorted(e.user for e in cli.list("app")) == sorted(original)
    assert cli.export("app") == {**original, "alice": "a2"}
    assert main(["-e", "app", "--export", "--format", fmt, *prefix]) == 0  # no collision now


def test_a_name_two_users_share_is_refused_naming_it_and_writes_nothing(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.save("app", "alice", "a")
    cli.save("app", "ALICE", "b")
    cli.save("app", "db.url", "c")
    cli.save("app", "db-url", "d")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"ALICE=x\nDB_URL=y\nNEW=z\n")))
        assert main(["-e", "app", "--import", "-"]) == 2
    err = capsys.readouterr().err
    assert "'ALICE' could be users 'ALICE' and 'alice'" in err
    assert "'DB_URL' could be users 'db-url' and 'db.url'" in err
    assert len(_lines(err)) == 1
    assert cli.export("app") == {"ALICE": "b", "alice": "a", "db-url": "d", "db.url": "c"}


def test_a_prefixed_import_refuses_names_without_the_prefix(
    cli: CloudChain, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "x.env"
    path.write_text("APP_A='1'\nB='2'\nC='3'\n")
    assert main(["-e", "app", "--import", str(path), "--prefix", "APP_"]) == 2
    assert "'B', 'C' not starting with the prefix 'APP_'" in capsys.readouterr().err
    assert cli.export("app") == {}


def test_empty_values_are_refused_naming_every_one_before_any_aws_call(
    cli: CloudChain, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "x.env"
    path.write_text("A=''\nB='fine'\nC=\nD=''\n")
    # Nothing listens on port 9: any AWS call would fail there, with another error.
    unreachable = ["--endpoint-url", "http://127.0.0.1:9", "--max-attempts", "1"]
    assert main(["-e", "app", "--import", str(path), *unreachable]) == 2
    err = capsys.readouterr().err
    assert _lines(err) == [
        "cchain: error: the 3 secrets for app/A, app/C, app/D must not be empty; nothing was "
        "written"
    ]
    assert cli.export("app") == {}


def test_binary_base64_imports_back_what_it_exported(
    cli: CloudChain, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cli.save("bin", "cert", b"\x00\xffkey")
    cli.save("bin", "token", "t")
    assert main(["-e", "bin", "--export", "--format", "dotenv", "--binary", "base64"]) == 0
    path = tmp_path / "bin.env"
    path.write_text(capsys.readouterr().out)
    assert main(["-e", "copy", "--import", str(path), "--binary", "base64"]) == 0
    assert cli.export("copy") == {"CERT": b"\x00\xffkey", "TOKEN": "t"}
    assert main(["-e", "bin", "--import", str(path), "--binary", "base64"]) == 0
    assert "0 created, 0 changed, 2 unchanged" in capsys.readouterr().err
    assert sorted(e.user for e in cli.list("bin")) == ["cert", "token"]


def test_env_import_reads_what_env_export_writes_and_refuses_anything_else(
    cli: CloudChain, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    nasty = {"q": 'it\'s "$HOME" \\n ${X:-y} `id`', "nl": "a\nb\n", "bs": "C:\\dir\\"}
    for user, value in nasty.items():
        cli.save("src", user, value)
    assert main(["-e", "src", "--export", "--format", "env"]) == 0
    path = tmp_path / "src.sh"
    path.write_text(capsys.readouterr().out)
    assert main(["-e", "copy", "--import", str(path), "--format", "env"]) == 0
    assert cli.export("copy") == {u.upper(): v for u, v in nasty.items()}
    path.write_text("A=$HOME\n")
    assert main(["-e", "copy", "--import", str(path), "--format", "env"]) == 2
    assert "env entry A (line 1) is not a single-quoted value" in capsys.readouterr().err
