"""cchain:// references and several -e services, in-process through main([...]) on moto:
parsing, the refusals (each one line naming the variable, before the command starts), the
precedence between services, --resolve's output, and the child runner's exit codes."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import KEY_ALIAS, NASTY_VALUES

from cloudchain import CloudChain
from cloudchain.child import run_child
from cloudchain.cli import main
from cloudchain.commands.environ import DestFiles
from cloudchain.errors import ValidationError
from cloudchain.formats.env import parse_env
from cloudchain.refs import Reference, find_references, parse_reference


@pytest.fixture
def cli(chain: CloudChain, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudChain]:
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    chain.import_secrets("web", {"token": "web-token", "db-password": "web-db", "only-web": "w"})
    chain.import_secrets("shared", {"db-password": "shared-db", "region": "eu"})
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


# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("cchain://web/token", Reference("web", "token")),
        ("cchain://web/token?version=3", Reference("web", "token", version=3)),
        ("cchain://web/token?stage=pending", Reference("web", "token", stage="pending")),
        ("cchain://web/tls/key?dest=file", Reference("web", "tls/key", dest="file")),
        ("cchain://my%2Fsvc/a%20b?dest=/run/s/k", Reference("my/svc", "a b", dest="/run/s/k")),
        ("cchain://w/t?version=2&dest=file", Reference("w", "t", version=2, dest="file")),
    ],
)
def test_references_parse(value: str, expected: Reference) -> None:
    assert parse_reference("V", value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("cchain://web", "names no SERVICE/USER"),
        ("cchain:///token", "names no SERVICE/USER"),
        ("cchain://web/", "names no SERVICE/USER"),
        ("cchain://web/t?version=0", "version must be a positive whole number"),
        ("cchain://web/t?version=x", "version must be a positive whole number"),
        ("cchain://web/t?version=1&stage=pending", "give version or stage, not both"),
        ("cchain://web/t?stage=next", "stage must be current, pending or previous"),
        ("cchain://web/t?dest=rel/path", "dest must be file or an absolute path"),
        ("cchain://web/t?dest=/tmp/a%00b", "dest holds a NUL character"),
        ("cchain://web/t?dest=file&dest=file", "option dest is given twice"),
        ("cchain://web/t?colour=red", "unknown option 'colour'"),
        ("cchain://web/t?version", "option 'version' has no value"),
        ("cchain://web/%ff", "a %-escape is not UTF-8"),
    ],
)
def test_malformed_references_are_refused_naming_the_variable(value: str, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_reference("DB_URL", value)
    assert str(caught.value).startswith("DB_URL holds a malformed cchain:// reference: ")
    assert problem in str(caught.value)


def test_a_reference_in_a_loader_variable_is_refused_unless_allowed() -> None:
    environ = {"LD_PRELOAD": "cchain://web/lib?dest=file", "A": "cchain://web/a", "B": "b"}
    with pytest.raises(ValidationError, match=r"^LD_PRELOAD holds a cchain:// reference, but"):
        find_references(environ)
    allowed = find_references(environ, {"LD_PRELOAD"})
    assert list(allowed) == ["A", "LD_PRELOAD"]


# -- references through --exec (each test sets up moto once: it costs most of the time) -------


def test_exec_resolves_references_in_the_environment_without_any_service(
    cli: CloudChain, execs: Execs, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.save("web", "token", "web-token-2")
    cli.save("web", "literal", "cchain://web/token")
    monkeypatch.setenv("NOW", "cchain://web/token")
    cli.save("web", "token", "web-token-3", stage="pending")
    monkeypatch.setenv("BEFORE", "cchain://web/token?version=1")
    monkeypatch.setenv("PENDING", "cchain://web/token?stage=pending")
    monkeypatch.setenv("PREVIOUS", "cchain://web/token?stage=previous")
    monkeypatch.setenv("PLAIN", "not a reference")
    assert main(["--exec", "--", "env"]) == 0
    [(_, _, env)] = execs.calls
    assert (env["NOW"], env["BEFORE"], env["PLAIN"]) == (
        "web-token-2",
        "web-token",
        "not a reference",
    )
    assert (env["PENDING"], env["PREVIOUS"]) == ("web-token-3", "web-token")
    assert "TOKEN" not in env
    # --pristine keeps the references, which name what the command is meant to get.
    assert main(["--pristine", "--exec", "--", "env"]) == 0
    env = execs.calls[1][2]
    assert env["NOW"] == "web-token-2" and "PLAIN" not in env
    # A secret's value is data: a reference in it stays as it is.
    assert main(["-e", "web", "--exec", "--", "env"]) == 0
    assert execs.calls[2][2]["LITERAL"] == "cchain://web/token"


REFUSED = [
    # (environment, what cchain is asked, exit code, the error line, the hint line or None)
    ({"DB": "cchain://web/nobody"}, ["-e", "shared"], 3, "DB references ", None),
    ({"DB": "cchain://web/token?version=9"}, ["-e", "shared"], 3, "DB references ", None),
    ({"DB": "cchain://web/only-web?stage=pending"}, [], 3, "DB references ", None),
    ({"DB": "cchain://web"}, [], 2, "DB holds a malformed cchain:// reference: it names no",
     "cchain: hint: write it as cchain://SERVICE/USER[?version=N|stage=pending|dest=file|dest=/path]"),
    ({"LD_PRELOAD": "cchain://web/token?dest=file"}, [], 2,
     "LD_PRELOAD holds a cchain:// reference, but LD_PRELOAD changes how programs are found, "
     "loaded or run; refused (--allow-env LD_PRELOAD allows it)", None),
    ({"PYTHONPATH": "cchain://web/token"}, ["-e", "shared"], 2,
     "PYTHONPATH holds a cchain:// reference", None),
    ({"CERT": "cchain://web/cert"}, [], 1, "CERT references web/cert, which is a binary secret",
     "cchain: hint: add ?dest=file to the reference to have it written to a file instead"),
    ({"A": "cchain://web/token?dest={tmp}/x", "B": "cchain://web/only-web?dest={tmp}/x"}, [], 1,
     "B and A both write {tmp}/x", None),
    ({"A": "cchain://web/token?dest={tmp}/x", "B": "cchain://web/only-web?dest={tmp}/./x"}, [], 1,
     "B and A both write {tmp}/./x", None),
    ({"KEY": "cchain://web/token?dest=/tmp/k%00ey"}, [], 2,
     "KEY holds a malformed cchain:// reference: dest holds a NUL character",
     "cchain: hint: write it as cchain://SERVICE/USER[?version=N|stage=pending|dest=file|dest=/path]"),
    ({"GOOD": "no reference"}, [], 2,
     "--exec needs -e/--service, or cchain:// references in the environment", None),
]  # fmt: skip


def test_a_bad_reference_is_one_line_naming_the_variable_before_the_command_starts(
    cli: CloudChain,
    execs: Execs,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    cli.save("web", "cert", b"\x00\x01der")
    for (environ, argv, code, error, hint), action in itertools.product(
        REFUSED, (["--exec", "--", "env"], ["--resolve"])
    ):
        with monkeypatch.context() as env:
            env.setenv("GOOD", "cchain://web/token")
            for name, value in environ.items():
                env.setenv(name, value.format(tmp=tmp_path))
            assert main([*argv, *action]) == code, (environ, action)
        out, err = capsys.readouterr()
        assert execs.calls == [] and out == ""
        error = error.format(tmp=tmp_path).replace("--exec needs", f"{action[0]} needs")
        assert err.splitlines()[0].startswith(f"cchain: error: {error}")
        assert err.splitlines()[1:] == ([hint] if hint else [])
        assert "web-token" not in err and "shared-db" not in err
    assert not (tmp_path / "x").exists()


# -- several services ---------------------------------------------------------------------------


def test_a_later_service_wins_with_one_warning_naming_both(
    cli: CloudChain, execs: Execs, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-e", "web", "-e", "shared", "--exec", "--", "env"]) == 0
    [(_, _, env)] = execs.calls
    assert (env["DB_PASSWORD"], env["TOKEN"], env["REGION"]) == ("shared-db", "web-token", "eu")
    assert capsys.readouterr().err == (
        "cchain: warning: DB_PASSWORD from service shared overrides the one from service web\n"
    )
    assert main(["-e", "shared", "-e", "web", "--exec", "--", "env"]) == 0
    assert execs.calls[1][2]["DB_PASSWORD"] == "web-db"
    capsys.readouterr()
    # --export merges alike: by variable name in env and dotenv, by user in json.
    assert main(["-e", "web", "-e", "shared", "--export", "--format", "env"]) == 0
    out, err = capsys.readouterr()
    assert parse_env(out) == {
        "DB_PASSWORD": "shared-db", "ONLY_WEB": "w", "REGION": "eu", "TOKEN": "web-token"
    }  # fmt: skip
    assert (
        err
        == "cchain: warning: DB_PASSWORD from service shared overrides the one from service web\n"
    )
    assert main(["-e", "shared", "-e", "web", "--export"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "db-password": "web-db",
        "only-web": "w",
        "region": "eu",
        "token": "web-token",
    }
    assert err == (
        "cchain: warning: user 'db-password' from service web overrides the one from service shared\n"
    )
    # So do the formats for other tools, by user as json does.
    assert main(["-e", "shared", "-e", "web", "--export", "--format", "tfvars"]) == 0
    out, err = capsys.readouterr()
    assert 'db-password = "web-db"' in out.replace('"db-password"', "db-password")
    assert "shared-db" not in out
    assert err.startswith("cchain: warning: user 'db-password' from service web overrides")


def test_a_collision_with_no_override_or_an_empty_service_is_an_error(
    cli: CloudChain, execs: Execs, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-e", "web", "-e", "shared", "--no-override", "--exec", "--", "env"]) == 1
    error, hint = capsys.readouterr().err.splitlines()
    assert error == "cchain: error: DB_PASSWORD is set by both service web and service shared"
    assert hint.startswith("cchain: hint: ")
    assert main(["-e", "web", "-e", "shared", "--no-override", "--export"]) == 1
    assert "user 'db-password' is set by both service web and service shared" in (
        capsys.readouterr().err
    )
    for action in (["--export"], ["--resolve"], ["--exec", "--", "env"]):
        assert main(["-e", "web", "-e", "nosuch", *action]) == 3
        out, err = capsys.readouterr()
        assert out == "" and execs.calls == []
        assert err.splitlines() == [
            "cchain: error: service nosuch has no secrets",
            "cchain: hint: check the service's name; --allow-empty accepts a service with none",
        ]
        assert main(["-e", "web", "-e", "nosuch", "--allow-empty", *action]) == 0
        capsys.readouterr()
    assert main(["-e", "nosuch", "--export"]) == 3  # it used to print {}
    capsys.readouterr()
    assert main(["-e", "web", "-e", "shared", "--export", "--format", "k8s"]) == 2
    assert capsys.readouterr().err == (
        "cchain: error: --format k8s with several -e services needs --k8s-name\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-e", "web", "-e", "shared", "-u", "token", "--read"],
         "--read takes one -e/--service, not 2 (only --exec, --export and --resolve take several)"),
        (["-e", "web", "-e", "shared", "--list"], "--list takes one -e/--service, not 2"),
        (["-e", "web", "-e", "web", "--export"], "-e web is given twice"),
    ],
)  # fmt: skip
def test_several_services_elsewhere_are_a_usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"cchain: error: {message}")


# -- --resolve ----------------------------------------------------------------------------------


def test_resolve_prints_what_exec_would_set_in_a_quoting_that_reads_back(
    cli: CloudChain,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    cli.import_secrets("nasty", NASTY_VALUES)
    for n, user in enumerate(sorted(NASTY_VALUES)):
        monkeypatch.setenv(f"REF_{n}", f"cchain://nasty/{user}")
    monkeypatch.setenv("KEY", f"cchain://web/token?dest={tmp_path}/key")
    assert main(["-e", "shared", "--resolve"]) == 0
    out, err = capsys.readouterr()
    expected = {f"REF_{n}": NASTY_VALUES[u] for n, u in enumerate(sorted(NASTY_VALUES))}
    expected.update(DB_PASSWORD="shared-db", REGION="eu", KEY=f"{tmp_path}/key")
    assert parse_env(out) == expected
    assert list(parse_env(out)) == sorted(expected)
    # The ?dest file stays, named on stderr.
    assert (tmp_path / "key").read_text() == "web-token"
    assert err == (
        f"cchain: wrote 1 file(s) for ?dest references; they stay after cchain exits: "
        f"{tmp_path}/key\n"
    )
    # sh reads each line back exactly, too: `set -a; . FILE` exports them all.
    path = tmp_path / "resolved.env"
    path.write_text(out)
    shell = subprocess.run(
        ["sh", "-c", 'set -a; . "$1"; shift; exec "$@"', "sh", str(path), sys.executable, "-c",
         "import json, os, sys; print(json.dumps({k: os.environ[k] for k in sys.argv[1:]}))",
         *expected],
        capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert json.loads(shell.stdout) == expected


def test_resolve_refuses_a_reference_in_a_variable_whose_name_sh_would_run(
    cli: CloudChain,
    execs: Execs,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Printed as NAME='value', this name is a command when the output is sourced or eval'd.
    planted = tmp_path / "ran"
    for name in (f"X;touch {planted};Y", "A\nB", "9LIVES"):
        with monkeypatch.context() as env:
            env.setenv(name, "cchain://web/token")
            assert main(["--resolve"]) == 2
            out, err = capsys.readouterr()
            assert out == "" and "web-token" not in err
            assert err.startswith("cchain: error: --resolve cannot print ")
            assert len(err.splitlines()) == 1
            # --exec puts it in the environment as it is: no shell reads it there.
            assert main(["--exec", "--", "env"]) == 0
            assert execs.calls.pop()[2][name] == "web-token"
    assert not planted.exists()


# -- the child runner ---------------------------------------------------------------------------


def test_run_child_exits_with_the_status_or_128_plus_the_signal(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"]}
    assert run_child("/bin/sh", ["sh", "-c", "exit 7"], env) == 7
    assert run_child("/bin/sh", ["sh", "-c", "kill -USR1 $$"], env) == 128 + signal.SIGUSR1
    # SIGPIPE is back at its default in the child, though Python ignores it.
    out = tmp_path / "status"
    assert (
        run_child("/bin/sh", ["sh", "-c", f"exec grep SigIgn /proc/self/status > {out}"], env) == 0
    )
    ignored = int(out.read_text().split()[1], 16)
    assert signal.getsignal(signal.SIGPIPE) is signal.SIG_IGN  # in this process
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()


def test_run_child_passes_on_a_signal_sent_to_us(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = f"trap 'exit 9' HUP; touch {ready}; while :; do sleep 0.05; done"

    def hang_up_when_ready() -> None:
        while not ready.exists():
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGHUP)

    sender = threading.Thread(target=hang_up_when_ready, daemon=True)
    sender.start()
    assert run_child("/bin/sh", ["sh", "-c", script], {"PATH": os.environ["PATH"]}) == 9
    sender.join(5)
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


# -- ?dest files --------------------------------------------------------------------------------


def test_dest_files_removes_only_what_it_wrote(tmp_path: Path) -> None:
    files = DestFiles()
    private = Path(files.write("KEY", "file", b"\x00key"))
    # A variable's name never leads out of the private directory, nor onto another's file.
    odd = [Path(files.write(name, "file", name)) for name in ("../../x", "..", "______x")]
    assert {p.parent for p in odd} == {private.parent}
    assert [p.read_text() for p in odd] == ["../../x", "..", "______x"]
    # Written again, a variable keeps its file.
    assert Path(files.write("KEY", "file", b"new")) == private and private.read_bytes() == b"new"
    kept, replaced = tmp_path / "kept", tmp_path / "replaced"
    assert Path(files.write("KEPT", str(kept), "v")) == kept
    files.write("REPLACED", str(replaced), "v")
    (tmp_path / "new").write_text("someone else's")
    (tmp_path / "new").replace(replaced)  # as an editor or a rotation would replace it
    # Through a link of ours, the file is written, and removed, where the link leads.
    (tmp_path / "link").symlink_to(tmp_path / "target")
    files.write("LINKED", str(tmp_path / "link"), "v")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    files.write("FIFO", str(fifo), "through")
    assert os.read(reader, 100) == b"through"
    os.close(reader)
    assert private.read_bytes() == b"new" and oct(private.stat().st_mode & 0o777) == "0o600"
    assert oct(private.parent.stat().st_mode & 0o777) == "0o700"
    files.remove()
    assert not private.parent.exists() and not kept.exists()
    assert replaced.read_text() == "someone else's"
    assert (tmp_path / "link").is_symlink() and not (tmp_path / "target").exists()
    assert fifo.exists()


def test_dest_files_leaves_a_file_it_wrote_through_an_open_descriptor(tmp_path: Path) -> None:
    # `cchain --exec -- app > app.log` with ?dest=/dev/stdout: app.log is the caller's file,
    # written through the descriptor, not one cchain made: it must outlive the command.
    log = tmp_path / "app.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        files = DestFiles()
        for dest in (f"/dev/fd/{fd}", f"/proc/self/fd/{fd}"):
            assert files.write("KEY", dest, "secret") == dest
        files.remove()
    finally:
        os.close(fd)
    assert log.read_text() == "secret"


def test_run_child_as_pid_1_reaps_the_orphans_handed_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    orphan = subprocess.Popen(["true"])  # stands in for a process re-parented to PID 1
    time.sleep(0.1)
    monkeypatch.setattr(os, "getpid", lambda: 1)
    assert run_child("/bin/sh", ["sh", "-c", "exit 0"], {"PATH": os.environ["PATH"]}) == 0
    monkeypatch.undo()
    with pytest.raises(ChildProcessError):
        os.waitpid(orphan.pid, os.WNOHANG)
    orphan.returncode = 0  # reaped already: Popen must not wait for it again


# -- docs/containers.md -------------------------------------------------------------------------

CONTAINERS_PAGE = Path(__file__).parents[1] / "docs" / "containers.md"


def test_the_examples_in_docs_containers_parse_and_hold_valid_references() -> None:
    page = CONTAINERS_PAGE.read_text()
    blocks = re.findall(r"```(\w+)\n(.*?)```", page, re.S)
    kinds = [kind for kind, _ in blocks]
    assert kinds.count("json") == 2 and kinds.count("yaml") == 2 and "dockerfile" in kinds
    for kind, body in blocks:
        if kind == "json":
            json.loads(body)
        elif kind == "yaml":
            yaml.safe_load(body)
        elif kind == "dockerfile":
            entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", body, re.M)
            assert entrypoint and json.loads(entrypoint.group(1))[0] == "cchain"
            assert "--" in json.loads(entrypoint.group(1))
    references = re.findall(r"cchain://[^\s\"'`)]+", page)
    examples = [r for r in references if not r.endswith(("SERVICE/USER", "..."))]
    assert len(examples) >= 10
    for reference in examples:
        if reference != "cchain://billing":  # the page's own example of a malformed one
            parse_reference("EXAMPLE", reference)


def test_exec_watch_takes_one_service_and_no_dest_reference(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["-e", "web", "-e", "shared", "--exec", "--watch", "--", "env"]) == 2
    assert capsys.readouterr().err == (
        "cchain: error: --exec --watch watches one service: give exactly one -e\n"
    )
    monkeypatch.setenv("KEY", "cchain://web/key?dest=file")
    assert main(["-e", "web", "--exec", "--watch", "--", "env"]) == 2
    assert capsys.readouterr().err == (
        "cchain: error: --exec --watch does not take ?dest references (KEY)\n"
    )
