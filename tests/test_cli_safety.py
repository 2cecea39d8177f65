"""The CLI against hostile names, files and input, in-process through main([...]) and moto."""

from __future__ import annotations

import io
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY_ALIAS

from cloudchain import CloudChain, ValidationError
from cloudchain.cli import main
from cloudchain.envfile import LOADER_VARIABLES, check_loader_variables
from cloudchain.validation import MAX_SECRET_BYTES


@pytest.fixture
def cli(chain: CloudChain, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudChain]:
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)

    def no_exec(*args: Any) -> None:  # a test that reached exec would replace pytest itself
        raise AssertionError("execve was reached")

    monkeypatch.setattr(os, "execve", no_exec)
    yield chain


# -- a secret's name must not take over the process ---------------------------------------------

LOADER_USERS = ["path", "ld_preload", "LD_LIBRARY_PATH", "dyld-insert-libraries", "bash_env",
                "env", "shellopts", "ps4", "ifs", "pythonpath", "PYTHONSTARTUP", "perl5opt",
                "node_options", "java-tool-options", "gconv_path", "hostaliases", "glibc.tunables"]  # fmt: skip


@pytest.mark.parametrize("user", LOADER_USERS)
@pytest.mark.parametrize(
    "argv",
    [["--exec", "--", "true"], ["--export", "--format", "env"], ["--export", "--format", "dotenv"]],
)
def test_a_secret_that_would_set_a_loader_variable_is_refused(
    cli: CloudChain, capsys: pytest.CaptureFixture[str], user: str, argv: list[str]
) -> None:
    cli.save("ex", user, "/tmp/attacker")
    cli.save("ex", "db", "fine")
    assert main(["-e", "ex", *argv]) == 2
    captured = capsys.readouterr()
    variable = user.upper().replace("-", "_").replace(".", "_")
    assert captured.out == ""
    assert f"secret {user!r} of service ex would set {variable}" in captured.err
    assert f"--allow-env {variable}" in captured.err
    assert "/tmp/attacker" not in captured.err


@pytest.mark.parametrize(
    "name", [*sorted(LOADER_VARIABLES), "LD_AUDIT", "DYLD_X", "PYTHONHOME", "BASH_FUNC_X"]
)
def test_every_listed_loader_variable_and_prefix_is_refused(name: str) -> None:
    names = {"user": name, "other": "DATABASE_URL"}
    with pytest.raises(ValidationError, match=f"would set {name}"):
        check_loader_variables("svc", names)
    check_loader_variables("svc", names, {name})


def test_allow_env_lets_one_named_variable_through(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.save("ex", "path", "/opt/bin")
    assert main(["-e", "ex", "--export", "--format", "env", "--allow-env", "PATH"]) == 0
    assert capsys.readouterr().out == "export PATH='/opt/bin'\n"
    assert main(["-e", "ex", "--export", "--format", "env", "--allow-env", "HOME"]) == 2
    assert main(["-e", "ex", "--export", "--format", "env", "--prefix", "APP_"]) == 0


def test_a_secret_too_large_for_the_environment_is_one_line_naming_it(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.save("big", "cert", "x" * 200_000)
    assert main(["-e", "big", "--exec", "--", "true"]) == 1
    err = capsys.readouterr().err
    error, hint = err.splitlines()  # one error line and its hint, nothing else
    assert error.startswith("cchain: error: cannot write 1 secret in the environment: ")
    assert error.endswith(
        "CERT (user 'cert') is 200006 bytes as an environment variable, over the limit of 131072"
    )
    assert hint == "cchain: hint: use --skip-unrepresentable to leave them out"


# -- -o FILE is safe on anything a user can name --------------------------------------------------


@pytest.fixture
def exported(cli: CloudChain) -> CloudChain:
    cli.save("app", "token", "t0ken")
    return cli


def _export_to(target: str) -> list[str]:
    return ["-e", "app", "--export", "--format", "env", "-o", target]


def test_output_to_a_fifo_writes_through_it(exported: CloudChain, tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert main(_export_to(str(fifo))) == 0
    reader.join(10)
    assert received == [b"export TOKEN='t0ken'\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_output_to_a_device_writes_through_it(exported: CloudChain) -> None:
    assert main(_export_to(os.devnull)) == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_output_through_a_symlink_replaces_the_file_and_keeps_the_link(
    exported: CloudChain, tmp_path: Path
) -> None:
    real = tmp_path / "real.env"
    real.write_text("old\n")
    real.chmod(0o644)
    link = tmp_path / "link.env"
    link.symlink_to(real)
    assert main(_export_to(str(link))) == 0
    assert link.is_symlink()
    assert real.read_text() == "export TOKEN='t0ken'\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing-dir/out.env", "does not exist"),
        (".", "is a directory"),
        ("/proc/cloudchain-test.env", "cannot write /proc/cloudchain-test.env"),
        ("/proc/version", "cannot write /proc/version"),
    ],
)
def test_unwritable_output_is_one_line_and_exit_1(
    exported: CloudChain,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    target: str,
    message: str,
) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(_export_to(target)) == 1
    err = capsys.readouterr().err
    assert err.startswith("cchain: error: ") and err.count("\n") == 1
    assert message in err
    assert "Traceback" not in err and "t0ken" not in err
    assert sorted(tmp_path.iterdir()) == []


def test_output_is_flushed_to_disk_before_it_is_renamed_into_place(
    exported: CloudChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or fsync(fd))
    monkeypatch.setattr(
        os, "replace", lambda a, b, **at: events.append("replace") or replace(a, b, **at)
    )
    assert main(_export_to(str(tmp_path / "out.env"))) == 0
    assert events[:2] == ["fsync", "replace"]


def test_the_temp_file_has_a_new_unpredictable_name_each_time(
    exported: CloudChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temps: list[str] = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b, **at: temps.append(a) or replace(a, b, **at))
    for _ in range(2):
        assert main(_export_to(str(tmp_path / "out.env"))) == 0
    assert len(set(temps)) == 2
    for temp in temps:
        assert temp.startswith(".out.env.") and str(os.getpid()) not in temp
        assert len(temp.split(".")[-2]) == 16  # 64 random bits


@pytest.mark.parametrize("action", [["-e", "app", "--export"], ["--render", "-"]])
def test_a_refused_output_is_refused_before_any_secret_is_read(
    cli: CloudChain,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    action: list[str],
) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{{ secret("app", "x") }}')))
    # No such secret: reading it first would exit 3 naming it.
    assert main([*action, "-o", str(open_dir / "out")]) == 1
    err = capsys.readouterr().err
    assert "not sticky" in err and err.count("\n") == 1
    assert list(open_dir.iterdir()) == []


# -- bounded input, printable output -------------------------------------------------------------


class CountingStdin(io.BytesIO):
    """A stdin that records how much was read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.buffer = self

    def isatty(self) -> bool:
        return False


@pytest.mark.parametrize("binary", [[], ["--binary"]])
def test_save_from_stdin_reads_no_more_than_its_limit(
    cli: CloudChain,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    binary: list[str],
) -> None:
    stdin = CountingStdin(b"x" * (10 * 1024 * 1024))
    monkeypatch.setattr("sys.stdin", stdin)
    assert main(["-u", "u", "-e", "s", "--save", "-", *binary]) == 2
    assert stdin.tell() <= MAX_SECRET_BYTES + 3
    assert "over the limit: the limit is 393216" in capsys.readouterr().err


def test_import_refuses_a_file_over_its_limit(
    cli: CloudChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b'{"a": "' + b"x" * (16 * 1024 * 1024) + b'"}')
    assert main(["-e", "s", "--import", str(big)]) == 2
    assert "over the limit" in capsys.readouterr().err
    assert list(cli.list()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": ' + b"[" * 200_000, "deeper than 20 levels"),
        (b'{"a": "1", "b": "2", "a": "3"}', "gives the key 'a' twice"),
        (b"A=1\nB=2\nA=3\n", "entry A is given twice"),
        (b"\xff\xfeA=1\n", "not UTF-8"),
    ],
)
def test_import_refuses_hostile_files_in_one_line_writing_nothing(
    cli: CloudChain,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    message: str,
) -> None:
    path = tmp_path / "in"
    path.write_bytes(content)
    assert main(["-e", "s", "--import", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(cli.list()) == []


@pytest.mark.parametrize("content", [b'\xef\xbb\xbf{"a": "1"}', b"\xef\xbb\xbfa=1\n"])
def test_import_accepts_a_utf8_byte_order_mark(
    cli: CloudChain, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "in"
    path.write_bytes(content)
    assert main(["-e", "s", "--import", str(path)]) == 0
    assert cli.export("s") == {"a": "1"}


def test_stored_names_with_control_characters_are_escaped_when_printed(
    cli: CloudChain, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Written by something that does not refuse them, as an older cloudchain did.
    cli.save("svc", "placeholder", "x")
    item = dynamodb.get_item(
        TableName="safedb", Key={"Service": {"S": "svc"}, "Username": {"S": "placeholder"}}
    )["Item"]
    item["Username"] = {"S": "evil\nsvc\tforged\x1b[31m"}
    dynamodb.put_item(TableName="safedb", Item=item)
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["svc\tevil\\nsvc\\tforged\\x1b[31m", "svc\tplaceholder"]
    assert main(["--list", "--json"]) == 0
    assert {r["user"] for r in json.loads(capsys.readouterr().out)} == {
        "evil\nsvc\tforged\x1b[31m",
        "placeholder",
    }
    # A stored name is still usable as it is: only new names are refused.
    assert main(["-e", "svc", "--delete", "-u", "evil\nsvc\tforged\x1b[31m"]) == 0
    assert [e.user for e in cli.list()] == ["placeholder"]


def test_an_error_message_never_prints_a_raw_control_character(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-u", "a\nb", "-e", "s", "--read"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err
    assert main(["-u", "x\x1b[2J", "-e", "s", "--save", "-"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "x\\x1b[2J" in err
