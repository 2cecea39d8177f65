"""export, exec and import through the installed cchain against a moto server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values
from faultproxy import FaultProxy
from helpers import DOTENV_REFUSED, KEY_ALIAS, NASTY_VALUES
from support import BIN, Emulator

from cloudchain import CloudChain
from cloudchain.envfile import env_name

pytestmark = pytest.mark.e2e

NASTY = NASTY_VALUES
EXPECTED_ENV = {env_name(user): value for user, value in NASTY.items()}
DOTENV_SAFE = {user: value for user, value in NASTY.items() if user not in DOTENV_REFUSED}
EXPECTED_DOTENV = {env_name(user): value for user, value in DOTENV_SAFE.items()}
PRINT_ENV = "import json, os, sys; print(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))"


def _chain(emulator: Emulator) -> CloudChain:
    return CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS)


@pytest.fixture
def nasty(emulator: Emulator) -> Emulator:
    _chain(emulator).import_secrets("app", NASTY)
    _chain(emulator).import_secrets("safe", DOTENV_SAFE)
    return emulator


def _read_back_in_shell(
    shell: str, script: str, path: Path, names: dict[str, str] = EXPECTED_ENV
) -> dict[str, str]:
    proc = subprocess.run(
        [shell, "-c", f'{script} "$1"; shift; exec "$@"', shell, str(path), sys.executable,
         "-c", PRINT_ENV, *names],
        capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    return json.loads(proc.stdout)


def test_export_json_is_exact_and_sorted(nasty: Emulator) -> None:
    result = nasty.run("-e", "app", "--export")
    assert result.code == 0
    assert json.loads(result.out) == NASTY
    assert list(json.loads(result.out)) == sorted(NASTY)


def test_export_dotenv_reads_back_in_python_dotenv_sh_and_bash(
    nasty: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "app.env"
    result = nasty.run("-e", "safe", "--export", "--format", "dotenv", "-o", str(path))
    assert result.code == 0, result.err
    assert result.out == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert dict(dotenv_values(path)) == EXPECTED_DOTENV
    for shell in ("sh", "bash"):
        assert _read_back_in_shell(shell, "set -a; .", path, EXPECTED_DOTENV) == EXPECTED_DOTENV
    refused = nasty.run("-e", "app", "--export", "--format", "dotenv")
    assert (refused.code, refused.out) == (1, "")
    assert "cannot write 3 secrets as dotenv that sh, bash and python-dotenv" in refused.err


def test_export_env_evals_exactly_in_sh_and_bash(nasty: Emulator, tmp_path: Path) -> None:
    result = nasty.run("-e", "app", "--export", "--format", "env")
    assert result.code == 0
    assert all(line.startswith("export ") for line in result.out.splitlines() if "='" in line)
    path = tmp_path / "app.sh"
    path.write_text(result.out)
    for shell in ("sh", "bash"):
        assert _read_back_in_shell(shell, 'eval "$(cat "$1")"; :', path) == EXPECTED_ENV


def test_prefix_and_name_mapping(emulator: Emulator) -> None:
    _chain(emulator).import_secrets("app", {"db-password": "x", "9lives": "y"})
    result = emulator.run("-e", "app", "--export", "--format", "env", "--prefix", "APP_")
    assert result.out == "export APP_DB_PASSWORD='x'\nexport APP__9LIVES='y'\n"


def test_colliding_names_fail_naming_both_and_print_nothing(emulator: Emulator) -> None:
    _chain(emulator).import_secrets("app", {"db-password": "x", "DB_PASSWORD": "y"})
    for args in (["--export", "--format", "dotenv"], ["--exec", "--", "true"]):
        result = emulator.run("-e", "app", *args)
        assert result.code == 1
        assert result.out == ""
        assert "'DB_PASSWORD' and 'db-password'" in result.err


def test_failure_in_the_middle_of_an_export_prints_nothing(emulator: Emulator) -> None:
    _chain(emulator).import_secrets("app", {f"k{n}": f"v{n}" for n in range(30)})
    dynamodb = emulator.client("dynamodb")
    key = {"Service": {"S": "app"}, "Username": {"S": "k17"}}
    item = dynamodb.get_item(TableName="safedb", Key=key)["Item"]
    item["Secret"] = dynamodb.get_item(TableName="safedb", Key={**key, "Username": {"S": "k3"}})[
        "Item"
    ]["Secret"]
    dynamodb.put_item(TableName="safedb", Item=item)
    for fmt in ("json", "dotenv", "env"):
        result = emulator.run("-e", "app", "--export", "--format", fmt)
        assert (result.code, result.out) == (1, "")
        assert "app/k17" in result.err
        assert "v3" not in result.err


def test_exec_passes_secrets_in_the_environment_only(nasty: Emulator) -> None:
    result = nasty.run("-e", "app", "--exec", "--", sys.executable, "-c", PRINT_ENV, *EXPECTED_ENV)
    assert result.code == 0, result.err
    assert json.loads(result.out) == EXPECTED_ENV
    argv = nasty.run("-e", "app", "--exec", "--", "sh", "-c", 'tr "\\0" " " < /proc/$$/cmdline')
    assert argv.code == 0
    assert all(value.strip() not in argv.out for value in NASTY.values())


def test_exec_warns_on_override_and_keeps_the_exit_status(emulator: Emulator) -> None:
    _chain(emulator).import_secrets("app", {"home": "/secret/home", "token": "t"})
    result = emulator.run("-e", "app", "--exec", "--", "sh", "-c", 'echo "$HOME $TOKEN"; exit 7')
    assert result.code == 7
    assert result.out == "/secret/home t\n"
    assert result.err == "cchain: warning: HOME from service app overrides an inherited variable\n"


def test_exec_pristine_keeps_only_the_basic_variables(emulator: Emulator) -> None:
    _chain(emulator).import_secrets("app", {"token": "t"})
    result = emulator.run(
        "-e", "app", "--pristine", "--prefix", "X_", "--exec", "--", "env",
        env={"LANG": "C.UTF-8", "SOMETHING_ELSE": "leak"},
    )  # fmt: skip
    names = {line.split("=", 1)[0] for line in result.out.splitlines()}
    assert "X_TOKEN=t" in result.out.splitlines()
    assert "SOMETHING_ELSE" not in names
    assert "AWS_ACCESS_KEY_ID" not in names
    assert names <= {"PATH", "HOME", "USER", "LANG", "TERM", "TZ", "X_TOKEN"}


def test_cchain_options_after_exec_are_a_usage_error_not_a_missing_command(
    emulator: Emulator,
) -> None:
    _chain(emulator).import_secrets("web", {"token": "t0k3n"})
    refused = emulator.run("-e", "web", "--exec", "--pristine", "--", "env")
    assert (refused.code, refused.out) == (2, "")
    assert refused.err.splitlines()[-1] == (
        "cchain: error: --pristine after --exec would be taken as the command: put cchain's "
        "options before --exec (cchain -e SERVICE [options] --exec -- CMD)"
    )
    for args in (["--exec", "--", "env"], ["--exec", "env", "FOO=bar"]):
        ran = emulator.run("-e", "web", *args)
        assert ran.code == 0, ran.err
        assert "TOKEN=t0k3n" in ran.out.splitlines()


def test_exec_of_a_missing_command_exits_127(emulator: Emulator) -> None:
    _chain(emulator).import_secrets("app", {"token": "t"})
    result = emulator.run("-e", "app", "--exec", "--", "no-such-command-xyz")
    assert result.code == 127
    assert "command not found: no-such-command-xyz" in result.err
    # A command name cannot write a terminal control sequence into cchain's own error line.
    result = emulator.run("-e", "app", "--exec", "--", "no-such\x1b[2J")
    assert result.code == 127 and "command not found: no-such\\x1b[2J" in result.err
    assert "\x1b" not in result.err


def test_import_json_counts_and_skips_equal_values(emulator: Emulator, tmp_path: Path) -> None:
    _chain(emulator).import_secrets("app", {"same": "v", "differs": "old"})
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"same": "v", "differs": "new", "fresh": "f"}))
    result = emulator.run("-e", "app", "--import", str(path))
    assert result.code == 0, result.err
    assert result.err == "cchain: imported into app: 1 created, 1 changed, 1 unchanged\n"
    assert emulator.run("-u", "same", "-e", "app", "--history").out.count("\n") == 1


def test_import_dotenv_from_stdin(emulator: Emulator) -> None:
    result = emulator.run("-e", "app", "--import", "-", stdin="A='x y'\nB=\"it's\"\n")
    assert result.code == 0, result.err
    assert _chain(emulator).export("app") == {"A": "x y", "B": "it's"}


def test_exported_dotenv_imports_back_exactly(nasty: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    nasty.run("-e", "safe", "--export", "--format", "dotenv", "-o", str(path))
    assert nasty.run("-e", "copy", "--import", str(path)).code == 0
    assert _chain(nasty).export("copy") == EXPECTED_DOTENV


def test_import_dry_run_prints_the_plan_and_writes_nothing(emulator: Emulator) -> None:
    _chain(emulator).import_secrets("app", {"same": "v", "differs": "old"})
    result = emulator.run(
        "-e", "app", "--import", "-", "--dry-run",
        stdin='{"same": "v", "differs": "new", "fresh": "f"}',
    )  # fmt: skip
    assert result.code == 0
    assert result.out == "change\tdiffers\ncreate\tfresh\n"
    assert "nothing written" in result.err
    assert _chain(emulator).export("app") == {"differs": "old", "same": "v"}


def test_import_with_an_invalid_entry_writes_nothing(emulator: Emulator) -> None:
    result = emulator.run(
        "-e", "app", "--import", "-", stdin='{"good": "x", "empty": "", "also-good": "y"}'
    )
    assert result.code == 2
    assert "app/empty" in result.err
    assert _chain(emulator).export("app") == {}


# -- a secret's name must not take over the process ---------------------------------------------


def test_a_secret_named_path_cannot_choose_the_command_exec_runs(
    emulator: Emulator, tmp_path: Path
) -> None:
    trap = tmp_path / "trap"
    trap.mkdir()
    marker = tmp_path / "trap-ran"
    (trap / "id").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (trap / "id").chmod(0o755)
    _chain(emulator).import_secrets("ex", {"path": str(trap), "token": "t"})
    refused = emulator.run("-e", "ex", "--pristine", "--exec", "--", "id")
    assert refused.code == 2
    assert "secret 'path' of service ex would set PATH" in refused.err
    assert refused.out == "" and not marker.exists()
    # Allowed explicitly, PATH reaches the child, but the command was found with ours.
    allowed = emulator.run(
        "-e", "ex", "--pristine", "--allow-env", "PATH", "--exec", "--", "id", "-u"
    )
    assert allowed.code == 0, allowed.err
    assert allowed.out.strip().isdigit()
    assert not marker.exists()
    shown = emulator.run(
        "-e", "ex", "--allow-env", "PATH", "--exec", "--", "sh", "-c", "echo $PATH"
    )
    assert (shown.code, shown.out) == (0, f"{trap}\n")


def test_an_environment_too_large_for_exec_is_one_line_naming_the_largest(
    emulator: Emulator,
) -> None:
    # Each value fits one environment string; together they pass the kernel's ARG_MAX.
    _chain(emulator).import_secrets(
        "big", {f"part{n:02d}": chr(65 + n) * (100_000 + n) for n in range(24)}
    )
    result = emulator.run("-e", "big", "--exec", "--", "true")
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "too large for the system (E2BIG); the largest secret variable is PART23" in result.err


# -- dotenv: no name and no variable in the reader's environment changes a value -----------------

HOSTILE_READER_ENV = {
    "CCHAIN_LITERAL_DOLLAR": "HIJACKED",
    "CCHAIN_NOTHING": "HIJACKED",
    "HOME": "HIJACKED",
    "X": "HIJACKED",
}
LOAD_DOTENV = (
    "import json, os, sys\nfrom dotenv import load_dotenv\nload_dotenv(sys.argv[1])\n"
    "print(json.dumps({k: os.environ.get(k) for k in sys.argv[2:]}))"
)


def test_dotenv_reads_back_exactly_whatever_the_reader_environment_holds(
    emulator: Emulator, tmp_path: Path
) -> None:
    secrets = {**DOTENV_SAFE, "cchain_literal_dollar": "$", "cchain_nothing": "x"}
    _chain(emulator).import_secrets("safe", secrets)
    expected = {env_name(user): value for user, value in secrets.items()}
    path = tmp_path / "app.env"
    result = emulator.run("-e", "safe", "--export", "--format", "dotenv", "-o", str(path))
    assert result.code == 0, result.err
    assert "${" not in path.read_text()
    env = {"PATH": os.environ["PATH"], **HOSTILE_READER_ENV}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in HOSTILE_READER_ENV.items():
            patch.setenv(name, value)
        assert dict(dotenv_values(path)) == expected
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_DOTENV, str(path), *expected],
        capture_output=True, text=True, check=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    # load_dotenv leaves variables that are already set alone, by design: those two say nothing
    # about how it decodes the file.
    kept = {k: v for k, v in json.loads(loaded.stdout).items() if k not in HOSTILE_READER_ENV}
    assert kept == {k: v for k, v in expected.items() if k not in HOSTILE_READER_ENV}
    for shell in ("sh", "bash"):
        proc = subprocess.run(
            [shell, "-c", 'set -a; . "$1"; shift; exec "$@"', shell, str(path), sys.executable,
             "-c", PRINT_ENV, *expected],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
        assert json.loads(proc.stdout) == expected, shell
    copied = emulator.run("-e", "copy", "--import", str(path), env=HOSTILE_READER_ENV)
    assert copied.code == 0, copied.err
    assert _chain(emulator).export("copy") == expected
    # A value that dotenv can only write through a variable is refused, not written so.
    _chain(emulator).import_secrets("mixed", {"price": "it's $5", "cchain_literal_dollar": "x"})
    refused = emulator.run("-e", "mixed", "--export", "--format", "dotenv")
    assert (refused.code, refused.out) == (1, "")
    assert "as dotenv that sh, bash and python-dotenv all read back exactly: " in refused.err
    assert "PRICE (user 'price') holds a quote or backslash together with '$'" in refused.err


# -- -o FILE on special files --------------------------------------------------------------------


def test_output_to_dev_stdout_and_a_process_substitution_write_through(
    emulator: Emulator, tmp_path: Path
) -> None:
    _chain(emulator).import_secrets("app", {"token": "t0ken"})
    assert os.path.islink("/dev/stdout"), "this machine's /dev/stdout was already replaced"
    before = sorted(os.listdir("/dev"))
    to_stdout = emulator.run("-e", "app", "--export", "--format", "env", "-o", "/dev/stdout")
    assert to_stdout.code == 0, to_stdout.err
    assert to_stdout.out == "export TOKEN='t0ken'\n"
    assert sorted(os.listdir("/dev")) == before
    assert os.path.islink("/dev/stdout")
    copy = tmp_path / "copy.env"
    substituted = subprocess.run(
        ["bash", "-c", f'cchain -e app --export --format env -o >(cat > "{copy}"); wait'],
        capture_output=True, text=True, env={**emulator.env, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert substituted.returncode == 0, substituted.stderr
    assert copy.read_text() == "export TOKEN='t0ken'\n"


# -- import: partial failures ------------------------------------------------------------------


def test_an_import_that_fails_part_way_says_what_was_not_written_and_a_rerun_finishes(
    emulator: Emulator,
) -> None:
    entries = {f"k{n:02d}": f"v{n}" for n in range(12)}

    def deny_k07(operation: str, count: int, body: bytes) -> str:
        return "denied" if operation == "PutItem" and b'"k07"' in body else "forward"

    with FaultProxy(int(emulator.url.rsplit(":", 1)[1]), deny_k07) as proxy:
        failed = emulator.run(
            "-e", "imp", "--import", "-", "--max-workers", "2", stdin=json.dumps(entries),
            env={"CLOUDCHAIN_ENDPOINT_URL": proxy.url},
        )  # fmt: skip
    assert failed.code == 1
    err = failed.err.splitlines()
    assert len(err) == 2 and err[0].startswith("cchain: error: import into imp stopped: ")
    assert err[1].startswith("cchain: hint: every one of the ")
    assert "imp/k07" in err[0] and "access denied" in err[0]
    written = {e.user for e in _chain(emulator).list("imp")}
    not_written = {line.split("\t")[1] for line in failed.out.splitlines()}
    assert all(line.startswith("not-written\t") for line in failed.out.splitlines())
    assert "k07" in not_written and written | not_written == set(entries)
    assert not written & not_written
    assert len(written) < len(entries)
    rerun = emulator.run("-e", "imp", "--import", "-", stdin=json.dumps(entries))
    assert rerun.code == 0, rerun.err
    assert f"{len(not_written)} created, 0 changed, {len(written)} unchanged" in rerun.err
    assert _chain(emulator).export("imp") == entries


def test_a_partial_import_names_every_row_it_did_not_write(emulator: Emulator) -> None:
    entries = {f"k{n:02d}": f"v{n}" for n in range(30)}

    def deny_k07(operation: str, count: int, body: bytes) -> str:
        return "denied" if operation == "PutItem" and b'"k07"' in body else "forward"

    with FaultProxy(int(emulator.url.rsplit(":", 1)[1]), deny_k07) as proxy:
        failed = emulator.run(
            "-e", "imp", "--import", "-", "--max-workers", "1", stdin=json.dumps(entries),
            env={"CLOUDCHAIN_ENDPOINT_URL": proxy.url},
        )  # fmt: skip
    assert failed.code == 1
    error, hint = failed.err.splitlines()  # one error line, one hint, nothing else
    missing = [f"k{n:02d}" for n in range(7, 30)]  # one worker: k00-k06 landed, k07 failed
    assert error.startswith(
        "cchain: error: import into imp stopped: 7 of 30 new versions written, 23 not written "
        f"({', '.join(missing[:10])} and 13 more); "
    )
    assert hint == (
        "cchain: hint: every one of the 23 not written is listed on stdout; run the same "
        "import again to write them: what is already equal is skipped"
    )
    assert failed.out == "".join(f"not-written\t{user}\n" for user in missing)


def test_save_from_an_endless_stdin_stops_at_its_limit(emulator: Emulator) -> None:
    proc = subprocess.run(
        ["bash", "-c", "yes | cchain -u u -e s --save -"],
        capture_output=True, text=True, timeout=30,
        env={**emulator.env, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert "cchain: error: the secret on standard input is over the limit" in proc.stderr
    assert "Traceback" not in proc.stderr
