"""The installed cchain as a subprocess against a real moto server."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from helpers import create_reference_table
from support import BIN, Emulator, free_port

from cloudchain import CloudChain

pytestmark = pytest.mark.e2e

ROW = ["-u", "alice", "-e", "billing"]
NASTY = [
    "(*&*&*&^@#$)(_",
    "it's \"quoted\" and 'single' with  spaces ",
    "$HOME `id` $(echo no) \\ ; | & > < * ? ~ !",
    "pässwörd ✓ 密码 🔐",
]


def test_installed_cchain_is_the_console_script(emulator: Emulator) -> None:
    result = emulator.run("--version")
    assert result.code == 0
    assert result.out.startswith("cchain 1.")
    assert (BIN / "cchain-local").exists()


def test_python_dash_m_runs_the_cli(emulator: Emulator) -> None:
    result = emulator.run("-m", "cloudchain", "--version", program="python")
    assert (result.code, result.out.split()[0]) == (0, "cchain")


def test_reference_save_and_read(emulator: Emulator) -> None:
    saved = emulator.run(*ROW, "--save", "s3cr3t")
    assert saved.code == 0
    assert saved.out == ""
    assert "saved billing/alice" in saved.err
    read = emulator.run(*ROW, "--read")
    assert (read.code, read.out, read.err) == (0, "s3cr3t\n", "")
    assert emulator.run(*ROW, "-r", "-n").out == "s3cr3t"


def test_nasty_secrets_round_trip_through_stdin(emulator: Emulator) -> None:
    for user, secret in enumerate(NASTY):
        assert (
            emulator.run("-u", f"u{user}", "-e", "nasty", "--save", "-", stdin=secret + "\n").code
            == 0
        )
    exported = json.loads(emulator.run("-e", "nasty", "--export").out)
    assert exported == {f"u{user}": secret for user, secret in enumerate(NASTY)}
    assert emulator.run("-u", "u0", "-e", "nasty", "--read").raw_out == (NASTY[0] + "\n").encode()


def test_nasty_secret_round_trips_through_argv(emulator: Emulator) -> None:
    assert emulator.run(*ROW, "--save", NASTY[0]).code == 0
    assert emulator.run(*ROW, "--read").out == NASTY[0] + "\n"


def test_save_without_value_reads_a_pipe(emulator: Emulator) -> None:
    assert emulator.run(*ROW, "--save", stdin=b"piped\n\n").code == 0
    assert emulator.run(*ROW, "--read").out == "piped\n\n"


def test_list_delete_and_not_found(emulator: Emulator) -> None:
    for user in ("zed", "amy"):
        emulator.run("-u", user, "-e", "web", "-s", "v")
    emulator.run(*ROW, "-s", "v")
    assert emulator.run("--list").out == "billing\talice\nweb\tamy\nweb\tzed\n"
    assert emulator.run("-l", "-e", "web", "--json").out == (
        '[{"service": "web", "user": "amy", "legacy": false, "tags": {}}, '
        '{"service": "web", "user": "zed", "legacy": false, "tags": {}}]\n'
    )
    assert emulator.run(*ROW, "--delete").code == 0
    deleted = emulator.run(*ROW, "--read")
    assert deleted.code == 3
    assert deleted.err == (
        "cchain: error: billing/alice in table 'safedb' is deleted "
        "(`cchain --undelete` restores it)\n"
    )
    assert emulator.run(*ROW, "--delete").code == 3
    missing = emulator.run("-u", "nobody", "-e", "billing", "--read")
    assert missing.err == "cchain: error: no secret for billing/nobody in table 'safedb'\n"


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--read"], 2, "needs -u/--user and -e/--service"),
        ([*ROW, "--frobnicate"], 2, "unrecognized arguments"),
        (["-u", "", "-e", "billing", "--read"], 2, "user must not be empty"),
        ([*ROW, "--save", "--binary"], 2, "must not be empty"),
        ([*ROW, "--read", "--table", "absent"], 1, "cchain --setup"),
        ([*ROW, "-s", "x", "--key-alias", ""], 1, "no KMS key alias is configured"),
        ([*ROW, "-s", "x", "--key-alias", "alias/none"], 1, "alias/none"),
        ([*ROW, "--read", "--config", "/nonexistent/rc"], 1, "does not exist"),
        ([*ROW, "--read", "--profile", "ghost"], 1, "ghost"),
    ],
)
def test_expected_failures_are_one_line_with_their_exit_code(
    emulator: Emulator, args: list[str], code: int, text: str
) -> None:
    result = emulator.run(*args)
    assert result.code == code
    assert text in result.err
    assert "Traceback" not in result.err
    assert result.err.strip().splitlines()[-1].startswith(("cchain: error:", "usage:")) or (
        "cchain: error:" in result.err
    )
    assert "xxxxxxxx" not in result.err


def test_stopped_endpoint_exits_1_quickly_naming_it(emulator: Emulator) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = emulator.run(
        *ROW, "--read", "--endpoint-url", url, env={"CLOUDCHAIN_MAX_ATTEMPTS": "2"}
    )
    assert result.code == 1
    assert url in result.err
    assert "Traceback" not in result.err
    assert time.monotonic() - started < 10


def test_copied_ciphertext_is_refused(emulator: Emulator) -> None:
    emulator.run(*ROW, "--save", "-", stdin="alice-only")
    emulator.run("-u", "bob", "-e", "billing", "--save", "-", stdin="bob-only")
    dynamodb = emulator.client("dynamodb")
    key = {"Service": {"S": "billing"}, "Username": {"S": "alice"}}
    item = dynamodb.get_item(TableName="safedb", Key=key)["Item"]
    item["Username"] = {"S": "bob"}
    dynamodb.put_item(TableName="safedb", Item=item)
    result = emulator.run("-u", "bob", "-e", "billing", "--read")
    assert result.code == 1
    assert result.out == ""
    assert "billing/bob" in result.err
    assert "does not decrypt for this row" in result.err
    assert "alice-only" not in result.err


def test_aws_cli_recipe_with_botocore_calls(emulator: Emulator) -> None:
    emulator.run(*ROW, "--save", "-", stdin=NASTY[2])
    item = emulator.client("dynamodb").get_item(
        TableName="safedb", Key={"Service": {"S": "billing"}, "Username": {"S": "alice"}}
    )["Item"]
    plaintext = emulator.client("kms").decrypt(
        CiphertextBlob=base64.b64decode(item["Secret"]["S"]),
        EncryptionContext={"Service": "billing", "Username": "alice", "Version": "1"},
    )["Plaintext"]
    assert plaintext.decode() == NASTY[2]


def test_debug_prints_a_traceback_and_never_the_secret(emulator: Emulator) -> None:
    result = emulator.run(
        *ROW, "--save", "-", "--key-alias", "alias/none", "--debug", stdin="debug-secret-value"
    )
    assert result.code == 1
    assert "Traceback" in result.err
    assert "debug-secret-value" not in result.err
    assert base64.b64encode(b"debug-secret-value").decode()[:16] not in result.err


def test_setup_with_create_key_on_a_fresh_table_and_alias_twice(emulator: Emulator) -> None:
    args = ["--setup", "--create-key", "--table", "fresh", "--key-alias", "alias/fresh"]
    first = emulator.run(*args)
    assert first.code == 0
    assert first.err == "cchain: us-east-1 (home): table 'fresh' created; key alias/fresh created\n"
    second = emulator.run(*args)
    assert second.code == 0
    assert "already exists" in second.err
    saved = emulator.run(*ROW, "-s", "x", "--table", "fresh", "--key-alias", "alias/fresh")
    assert saved.code == 0


def test_reference_create_table_command_table_works(emulator: Emulator) -> None:
    create_reference_table(emulator.client("dynamodb"), "reference")
    assert emulator.run(*ROW, "-s", "x", "--table", "reference").code == 0
    assert emulator.run(*ROW, "-r", "--table", "reference").out == "x\n"


SECTIONED = "[dynamo]\nregion_name = us-east-1\nendpoint_url = {url}\ntablename = {table}\n\n[IAMKMS]\nkeyalias = alias/test\n"
HEADERLESS = (
    "region_name = us-east-1\nendpoint_url = {url}\ntablename = {table}\nkeyalias = alias/test\n"
)


@pytest.mark.parametrize(
    ("where", "layout"),
    [("home", SECTIONED), ("CLOUDCHAIN_CONFIG", HEADERLESS), ("--config", SECTIONED)],
    ids=["home-sectioned", "env-headerless", "flag-sectioned"],
)
def test_config_file_layouts_and_locations(
    emulator: Emulator, tmp_path: Path, where: str, layout: str
) -> None:
    CloudChain(endpoint_url=emulator.url, tablename="fromfile").setup()
    text = layout.format(url=emulator.url, table="fromfile")
    # Only the file configures cchain here: no CLOUDCHAIN_* variables at all.
    env = {k: v for k, v in emulator.env.items() if not k.startswith("CLOUDCHAIN_")}
    args: list[str] = []
    if where == "home":
        (Path(env["HOME"]) / ".cchainrc").write_text(text)
    else:
        path = tmp_path / "custom-rc"
        path.write_text(text)
        if where == "--config":
            args = ["--config", str(path)]
        else:
            env["CLOUDCHAIN_CONFIG"] = str(path)
    plain = Emulator(emulator.url, env)
    assert plain.run(*ROW, "-s", "from-config", *args).code == 0
    assert CloudChain(endpoint_url=emulator.url, tablename="fromfile").read("billing", "alice") == (
        "from-config"
    )


def test_precedence_flag_over_env_over_file(emulator: Emulator) -> None:
    for table in ("file-t", "env-t", "flag-t"):
        CloudChain(endpoint_url=emulator.url, tablename=table).setup()
    (Path(emulator.env["HOME"]) / ".cchainrc").write_text("[dynamo]\ntablename = file-t\n")
    emulator.run("-u", "a", "-e", "s", "-s", "1")
    emulator.run("-u", "b", "-e", "s", "-s", "2", env={"CLOUDCHAIN_TABLE": "env-t"})
    emulator.run(
        "-u", "c", "-e", "s", "-s", "3", "--table", "flag-t", env={"CLOUDCHAIN_TABLE": "env-t"}
    )
    listed = {
        t: [e.user for e in CloudChain(endpoint_url=emulator.url, tablename=t).list()]
        for t in ("file-t", "env-t", "flag-t")
    }
    assert listed == {"file-t": ["a"], "env-t": ["b"], "flag-t": ["c"]}
