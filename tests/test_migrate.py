"""--import-from against moto in-process: credstash rows written by the real credstash package,
Secrets Manager secrets written with boto3 (SSM, whose moto backend takes seconds to load, is
tested once, in tests/e2e/test_migrate_e2e.py); each imported version compared with what the
source's own reader returns for it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import credstash
import pytest
from credstash_table import CREDSTASH_TABLE
from helpers import KEY_ALIAS, NASTY_VALUES, CallCounter

from cloudchain import CloudChain
from cloudchain.cli import main
from cloudchain.migrate.run import Migration
from cloudchain.migrate.sources import parse_rule, parse_source

REGION = "us-east-1"
CONTEXT = {"env": "prod", "team": "payments"}


@pytest.fixture
def cli(chain: CloudChain, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudChain]:
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    yield chain


def put_credstash(name: str, values: list[str], **kwargs: Any) -> None:
    """Versions 1..n of a credstash secret, written by credstash's own putSecret (on clients
    built once: credstash builds a session per call otherwise)."""
    kms = boto3.client("kms", region_name=REGION)
    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    for n, value in enumerate(values, 1):
        credstash.putSecret(
            name, value, version=str(n), kms_key=KEY_ALIAS, kms=kms, dynamodb=dynamodb, **kwargs
        )


@pytest.fixture
def credstash_table(cli: CloudChain) -> dict[str, list[str]]:
    """A credstash table with several secrets and versions, with and without a context."""
    # The table credstash's createDdbTable makes, without its waiter and tagging.
    boto3.client("dynamodb", region_name=REGION).create_table(**CREDSTASH_TABLE)
    secrets = {
        "db.password": ["first", "second", "third"],
        "api.token": [NASTY_VALUES["unicode"], NASTY_VALUES["newline"]],
        "web.quotes": [NASTY_VALUES["quotes-and-dollars"]],
    }
    put_credstash("db.password", secrets["db.password"])
    put_credstash("api.token", secrets["api.token"], context=CONTEXT, digest="SHA512")
    put_credstash("web.quotes", secrets["web.quotes"], digest="MD5")
    return secrets


def item(chain: CloudChain, service: str, user: str) -> dict[str, Any]:
    reply = chain._dynamodb.get_item(
        TableName="safedb", Key={"Service": {"S": service}, "Username": {"S": user}}
    )
    return dict(reply["Item"])


def test_credstash_import_reads_back_as_credstash_getsecret_reads_every_version(
    credstash_table: dict[str, list[str]], cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    context = [f"--source-context={k}={v}" for k, v in CONTEXT.items()]
    assert main(["--import-from", "credstash", *context]) == 0
    err = capsys.readouterr().err
    assert "3 rows written (6 versions)" in err
    for name, values in credstash_table.items():
        service, user = name.split(".", 1)
        stored = cli.history(service, user)
        assert [v.action for v in stored] == ["import"] * len(values)
        for n in range(1, len(values) + 1):
            theirs = credstash.getSecret(
                name,
                version=str(n),
                region=REGION,
                context=CONTEXT if name == "api.token" else None,
            )
            assert cli.read(service, user, version=n) == theirs == values[n - 1]
        newest = item(cli, service, user)
        assert newest["Source"] == {"S": f"credstash:credential-store:{name}"}
        assert newest["SourceVersion"] == {"S": credstash.paddedInt(len(values))}
        assert newest["Comment"]["S"].startswith(f"imported from credstash:credential-store:{name}")
    # A second run writes nothing: every version is found by its source version id.
    assert main(["--import-from", "credstash", *context]) == 0
    assert "0 rows written (0 versions), 6 versions already imported" in capsys.readouterr().err
    assert main(["--import-from", "credstash", "--verify", *context]) == 0
    # A version added at the source since is reported missing, without any value.
    credstash.putSecret("db.password", "fourth", version="4", kms_key=KEY_ALIAS, region=REGION)
    assert main(["--import-from", "credstash", "--verify", *context]) == 1
    out, err = capsys.readouterr()
    assert (
        out
        == "missing\tdb/password\tcredstash:credential-store:db.password\tversion 0000000000000000004\n"
    )
    assert "fourth" not in out + err and "third" not in out + err


def test_credstash_dry_run_lists_rows_and_decrypts_nothing(
    credstash_table: dict[str, list[str]], cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = CallCounter(cli._clients.get("kms"), cli._clients.get("dynamodb"))
    migration = Migration(
        cli, parse_source("credstash"), parse_rule(parse_source("credstash"), None)
    )
    rows, refused = migration.plan()
    plans = migration.preview(rows, 4, append=False)
    assert refused == []
    assert [(p.action, p.row, len(p.versions)) for p in plans] == [
        ("create", "api/token", 2),
        ("create", "db/password", 3),
        ("create", "web/quotes", 1),
    ]
    assert calls.count("Decrypt") == 0 and calls.count("Put") == 0
    assert main(["--import-from", "credstash:credential-store", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1] == "create\tdb/password\tfrom db.password\t3 versions\t16 bytes"
    assert "dry run, nothing written" in err and "3 create" in err
    assert list(cli.list("db")) == []
    # api.token was stored with a context: without it (or with another) KMS refuses its key.
    for wrong in ([], ["--source-context", "env=dev"]):
        assert main(["--import-from", "credstash", "--max-workers", "1", *wrong]) == 1
        err = capsys.readouterr().err
        assert "cannot decrypt the data key of credstash secret api.token version" in err
        assert "give the one it was stored with: --source-context KEY=VALUE" in err
        assert list(cli.list("api")) == []


def test_a_credstash_version_of_non_ascii_digits_sorts_last_instead_of_crashing(
    credstash_table: dict[str, list[str]], cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    # A row someone wrote by hand with version "²": str.isdigit() takes it, int() does not.
    table = boto3.resource("dynamodb", region_name=REGION).Table("credential-store")
    row = table.get_item(Key={"name": "db.password", "version": credstash.paddedInt(1)})["Item"]
    table.put_item(Item={**row, "version": "\u00b2"})
    assert main(["--import-from", "credstash", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "create\tdb/password\tfrom db.password\t4 versions" in out
    context = [f"--source-context={k}={v}" for k, v in CONTEXT.items()]
    assert main(["--import-from", "credstash", *context]) == 0
    assert cli.read("db", "password") == "first"  # the hand-written version sorts last
    assert cli.read("db", "password", version=3) == "third"


def test_credstash_row_with_a_bad_hmac_is_reported_and_skipped(
    credstash_table: dict[str, list[str]], cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    table = boto3.resource("dynamodb", region_name=REGION).Table("credential-store")
    key = {"name": "db.password", "version": credstash.paddedInt(2)}
    table.update_item(
        Key=key, UpdateExpression="SET hmac = :h", ExpressionAttributeValues={":h": "00" * 32}
    )
    with pytest.raises(credstash.IntegrityError):
        credstash.getSecret("db.password", version="2", region=REGION)
    context = [f"--source-context={k}={v}" for k, v in CONTEXT.items()]
    assert main(["--import-from", "credstash", *context]) == 1
    out, err = capsys.readouterr()
    assert "skipped db.password version 0000000000000000002: its HMAC does not verify" in err
    assert "second" not in out + err
    assert [cli.read("db", "password", version=n) for n in (1, 2)] == ["first", "third"]
    # What was skipped stays skipped; with --skip-invalid the run says so and succeeds.
    assert main(["--import-from", "credstash", "--skip-invalid", *context]) == 0
    assert len(cli.history("db", "password")) == 2


def test_a_credstash_row_whose_key_kms_refuses_is_skipped_not_a_stop_for_every_row(
    credstash_table: dict[str, list[str]], cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    # A row someone planted (or damaged) with a data key KMS cannot unwrap: one byte changed.
    table = boto3.resource("dynamodb", region_name=REGION).Table("credential-store")
    row = table.get_item(Key={"name": "db.password", "version": credstash.paddedInt(1)})["Item"]
    wrapped = bytearray(base64.b64decode(row["key"]))
    wrapped[-1] ^= 1
    table.put_item(Item={**row, "name": "evil.row", "key": base64.b64encode(wrapped).decode()})
    context = [f"--source-context={k}={v}" for k, v in CONTEXT.items()]
    assert main(["--import-from", "credstash", "--max-workers", "1", *context]) == 1
    out, err = capsys.readouterr()
    assert "cchain: warning: skipped evil.row version 0000000000000000001: " in err
    assert "KMS refused it with the --source-context given, nor without one" in err
    assert "first" not in out + err and "not-written" not in out
    assert cli.read("db", "password") == "third" and cli.read("web", "quotes")
    assert list(cli.list("evil")) == []
    assert main(["--import-from", "credstash", "--skip-invalid", *context]) == 0


def test_names_that_do_not_fit_are_listed_and_nothing_is_imported(
    credstash_table: dict[str, list[str]], cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    put_credstash("flat", ["x"])
    put_credstash("bad.new\nline", ["y"])
    assert main(["--import-from", "credstash"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "invalid\tbad.new\\nline\tthe user new\\nline holds the control character U+000A; names must be printable",
        "invalid\tflat\tit has no '.' to split a service from a user at",
    ]
    assert "nothing was imported" in err and "--skip-invalid" in err
    assert list(cli.list("db")) == []
    # With --json, stdout is one JSON document; the names left out are warnings.
    assert main(["--import-from", "credstash", "--dry-run", "--json", "--skip-invalid"]) == 0
    out, err = capsys.readouterr()
    assert [row["user"] for row in json.loads(out)] == ["token", "password", "quotes"]
    assert "cchain: warning: cannot import flat: it has no '.'" in err
    # --map service:NAME puts every name, whole, into one service.
    assert main(["--import-from", "credstash", "--map", "service:legacy", "--skip-invalid",
                 "--source-context", "env=prod", "--source-context", "team=payments"]) == 0  # fmt: skip
    assert sorted(e.user for e in list(cli.list("legacy"))) == [
        "api.token", "db.password", "flat", "web.quotes"
    ]  # fmt: skip


def test_a_row_with_versions_of_its_own_is_a_conflict_unless_append(
    credstash_table: dict[str, list[str]], cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.save("db", "password", "ours")
    assert main(["--import-from", "credstash", "--map", "split:.", "--skip-invalid"]) == 4
    out, err = capsys.readouterr()
    assert out.startswith("conflict\tdb/password\tfrom db.password")
    assert "nothing was imported" in err
    assert list(cli.list("web")) == []
    args = ["--import-from", "credstash", "--append", "--source-context", "env=prod",
            "--source-context", "team=payments"]  # fmt: skip
    assert main(args) == 0
    assert [v.action for v in cli.history("db", "password")] == ["import"] * 3 + ["save"]
    assert cli.read("db", "password") == "third"


def test_secrets_manager_strings_binaries_and_versions_with_current_last(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name="prod/db", SecretString="old")
    sm.put_secret_value(SecretId="prod/db", SecretString="new")
    sm.create_secret(Name="prod/cert", SecretBinary=b"\x00\xffder")
    sm.create_secret(Name="prod/app", SecretString=json.dumps({"user": "u1", "pass": "p1"}))
    sm.put_secret_value(SecretId="prod/app", SecretString=json.dumps({"user": "u1", "pass": "p2"}))
    sm.create_secret(Name="prod/app/user", SecretString="collides when expanded")
    sm.create_secret(Name="dev/x", SecretString="not under the prefix")
    assert main(["--import-from", "secretsmanager:prod/"]) == 0
    assert [cli.read("prod", "db", version=n) for n in (1, 2)] == ["old", "new"]
    assert cli.read("prod", "db") == sm.get_secret_value(SecretId="prod/db")["SecretString"]
    assert cli.read("prod", "cert") == b"\x00\xffder"  # binary stays binary
    assert json.loads(str(cli.read("prod", "app"))) == {"user": "u1", "pass": "p2"}
    assert list(cli.list("dev")) == []
    capsys.readouterr()
    # --expand-json: one secret per key; prod/app/user from both is listed, nothing written.
    assert main(["--import-from", "secretsmanager:prod/app", "--expand-json"]) == 2
    out = capsys.readouterr().out
    assert "invalid\tprod/app/user\tprod/app/user, prod/app/user all map to prod/app/user" in out
    assert (
        main(["--import-from", "secretsmanager:prod/app", "--expand-json", "--skip-invalid"]) == 0
    )
    assert [cli.read("prod/app", "pass", version=n) for n in (1, 2)] == ["p1", "p2"]
    assert len(cli.history("prod/app", "user")) == 1  # only the versions that changed it
    assert main(["--import-from", "secretsmanager:prod/app", "--expand-json", "--skip-invalid",
                 "--verify"]) == 0  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--import-from", "vault:x"], "the source is credstash[:TABLE], ssm:/PREFIX or"),
        (["--import-from", "ssm:billing"], "an SSM source is a path prefix"),
        (["--import-from", "credstash", "--map", "cut:."], "must be split:SEP or service:NAME"),
        (["--import-from", "ssm:/a", "--source-context", "k=v"], "--source-context goes with"),
        (["--import-from", "ssm:/a", "--map", "split:/"], "--map goes with credstash and secret"),
        (["--import-from", "credstash", "--source-context", "k"], "must be KEY=VALUE"),
        (["--import-from", "credstash", "--source-context=k=1", "--source-context=k=2"], "twice"),
        (["--import-from", "credstash", "--map", "service:a\nb"], "--map service:NAME: the serv"),
        (["--import-from", "credstash", "--expand-json"], "--expand-json goes with"),
        (["--import-from", "credstash", "--verify", "--dry-run"], "leave out --dry-run"),
        (["--export", "-e", "x", "--map", "split:."], "--map goes with --import-from"),
    ],
)
def test_bad_import_from_flags_are_one_line_before_any_aws_call(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No moto here: an AWS call would fail on the unreachable default endpoint, slowly.
    assert main([*argv, "--endpoint-url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_row_keeps_its_history_size_and_a_rerun_still_writes_nothing(
    credstash_table: dict[str, list[str]], cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--import-from", "credstash", "--history-size", "2", "--source-context", "env=prod",
            "--source-context", "team=payments"]  # fmt: skip
    assert main(args) == 0
    assert [v.comment.rsplit(" ", 1)[1] for v in cli.history("db", "password") if v.comment] == [
        credstash.paddedInt(3), credstash.paddedInt(2)
    ]  # fmt: skip
    assert cli.read("db", "password") == "third"
    capsys.readouterr()
    assert main(args) == 0  # the version the row no longer keeps is not imported again
    assert "0 rows written (0 versions)" in capsys.readouterr().err
    assert main([*args, "--verify"]) == 0


def test_a_value_read_from_a_source_never_shows_in_a_repr() -> None:
    from cloudchain.migrate.model import SourceVersion
    from cloudchain.migrate.target import Incoming

    version = SourceVersion("7", lambda: "hunter2", size=7)
    incoming = Incoming(version, b"hunter2", binary=False)
    assert "hunter2" not in repr(version) + repr(incoming)


def test_expand_json_leaves_out_a_key_the_current_version_no_longer_holds(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name="prod/app", SecretString=json.dumps({"user": "u1", "old": "revoked"}))
    sm.put_secret_value(SecretId="prod/app", SecretString=json.dumps({"user": "u2"}))
    assert main(["--import-from", "secretsmanager:prod/", "--expand-json"]) == 0
    # "old" was taken out of the secret: its last value must not become a live secret again.
    assert sorted(e.user for e in cli.list("prod/app")) == ["user"]
    assert [cli.read("prod/app", "user", version=n) for n in (1, 2)] == ["u1", "u2"]
    assert main(["--import-from", "secretsmanager:prod/", "--expand-json", "--verify"]) == 0
    assert "revoked" not in "".join(capsys.readouterr())


def test_expand_json_imports_a_value_nested_too_deep_for_json_whole(cli: CloudChain) -> None:
    # A hostile value json.loads cannot parse (RecursionError, not ValueError) is no object.
    sm = boto3.client("secretsmanager", region_name=REGION)
    deep = '{"k":' * 20000 + "1" + "}" * 20000
    sm.create_secret(Name="deep/nest", SecretString=deep)
    assert main(["--import-from", "secretsmanager:deep/", "--expand-json"]) == 0
    assert cli.read("deep", "nest") == deep


def test_verify_reports_a_row_whose_current_is_not_the_sources_after_a_rollback(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    sm = boto3.client("secretsmanager", region_name=REGION)
    first = sm.create_secret(Name="prod/db", SecretString="good")["VersionId"]
    bad = sm.put_secret_value(SecretId="prod/db", SecretString="leaked")["VersionId"]
    assert main(["--import-from", "secretsmanager:prod/"]) == 0
    # The source rolls back: AWSCURRENT goes back to the first version.
    sm.update_secret_version_stage(
        SecretId="prod/db",
        VersionStage="AWSCURRENT",
        MoveToVersionId=first,
        RemoveFromVersionId=bad,
    )
    capsys.readouterr()
    assert main(["--import-from", "secretsmanager:prod/", "--verify"]) == 1
    out, err = capsys.readouterr()
    assert out == f"not-current\tprod/db\tsecretsmanager:prod/db\tversion {first}\n"
    assert "good" not in out + err and "leaked" not in out + err


def test_secrets_manager_awspending_becomes_the_pending_version(
    cli: CloudChain, capsys: pytest.CaptureFixture[str]
) -> None:
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name="prod/api", SecretString="live")
    staged = sm.put_secret_value(
        SecretId="prod/api", SecretString="rotating", VersionStages=["AWSPENDING"]
    )["VersionId"]
    assert main(["--import-from", "secretsmanager:prod/", "--dry-run"]) == 0
    assert "1 versions + pending" in capsys.readouterr().out
    assert main(["--import-from", "secretsmanager:prod/"]) == 0
    assert "1 rows written (2 versions)" in capsys.readouterr().err
    assert cli.read("prod", "api") == "live"
    assert cli.read("prod", "api", stage="pending") == "rotating"
    pending = item(cli, "prod", "api")["Pending"]["M"]
    assert pending["SourceVersion"] == {"S": staged} and pending["Action"] == {"S": "import"}
    assert main(["--import-from", "secretsmanager:prod/"]) == 0  # held already: nothing new
    assert "0 rows written (0 versions)" in capsys.readouterr().err
    assert main(["--import-from", "secretsmanager:prod/", "--verify"]) == 0
    # A row with a pending version of its own keeps it (--append: it has versions of its own).
    cli.save("prod", "own", "mine")
    cli.save("prod", "own", "my pending", stage="pending")
    sm.create_secret(Name="prod/own", SecretString="theirs")
    sm.put_secret_value(
        SecretId="prod/own", SecretString="their pending", VersionStages=["AWSPENDING"]
    )
    assert main(["--import-from", "secretsmanager:prod/", "--append"]) == 0
    assert cli.read("prod", "own") == "theirs"
    assert cli.read("prod", "own", stage="pending") == "my pending"
