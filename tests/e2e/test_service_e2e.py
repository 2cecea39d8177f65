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
from helpers import KEY_ALIAS, NASTY_VALUES
from support import Emulator

from cloudchain import CloudChain
from cloudchain.envfile import env_name

pytestmark = pytest.mark.e2e

NASTY = NASTY_VALUES
EXPECTED_ENV = {env_name(user): value for user, value in NASTY.items()}
# dotenv refuses a carriage return (python-dotenv's file reading turns it into a newline).
DOTENV_SAFE = {user: value for user, value in NASTY.items() if "\r" not in value}
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
    assert "CRLF holds a carriage return" in refused.err


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


def test_exec_of_a_missing_command_exits_127(emulator: Emulator) -> None:
    _chain(emulator).import_secrets("app", {"token": "t"})
    result = emulator.run("-e", "app", "--exec", "--", "no-such-command-xyz")
    assert result.code == 127
    assert "command not found: no-such-command-xyz" in result.err


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
