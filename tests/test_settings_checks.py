"""Settings are checked once, where the configuration is resolved: a region that is not one is
one line naming where it came from (exit 2, before any AWS call), and a key the config file
sets that nothing reads is a warning naming the file, the line and the nearest known key."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from cloudchain import CloudChain, RegionNameError
from cloudchain.cli import main
from cloudchain.config_sources import load_config

# Nothing listens on the discard port: a call that reached AWS would fail differently.
NOWHERE = "http://127.0.0.1:9"
ACTIONS = {
    "read": ["-u", "alice", "-e", "billing", "--read"],
    "list": ["--list"],
    "save": ["-u", "alice", "-e", "billing", "--save", "-"],
    "export": ["-e", "billing", "--export"],
}


def _bad_region(how: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], str]:
    """Configure a malformed region one way; return the extra flags and how errors name it."""
    if how == "flag":
        return ["--region", "eu west 1"], "from flag: 'eu west 1'"
    if how == "CLOUDCHAIN_REGION":
        monkeypatch.setenv("CLOUDCHAIN_REGION", "us_east 1")
        return [], "from environment variable CLOUDCHAIN_REGION: 'us_east 1'"
    if how == "AWS_DEFAULT_REGION":
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us east")
        return [], "from environment variable AWS_DEFAULT_REGION: 'us east'"
    if how == "profile":
        (home / "aws-config").write_text("[default]\nregion = us east\n")
        return [], "from the AWS profile in use (~/.aws/config): 'us east'"
    rc = home / ".cchainrc"
    rc.write_text("[dynamo]\ntablename = safedb\nregion_name = eu west 1\n")
    return [], f"from {rc} line 3: 'eu west 1'"


SOURCES = ("flag", "CLOUDCHAIN_REGION", "AWS_DEFAULT_REGION", "profile", "file")


@pytest.mark.parametrize("how", SOURCES)
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_a_malformed_region_is_one_line_naming_its_source_and_exit_2(
    how: str,
    action: str,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags, named = _bad_region(how, clean_env, monkeypatch)
    stdin = io.TextIOWrapper(io.BytesIO(b"hunter2\n"), encoding="utf-8")
    monkeypatch.setattr(stdin, "isatty", lambda: False)
    monkeypatch.setattr("sys.stdin", stdin)
    code = main([*ACTIONS[action], *flags, "--endpoint-url", NOWHERE, "--key-alias", "alias/k"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert lines[0].startswith("cchain: error: invalid region"), err
    assert named in lines[0]
    assert "is not an AWS region name" in lines[0]
    assert lines[1:] == ["cchain: hint: a region name looks like us-east-1 or eu-west-2"]
    assert "hunter2" not in err


@pytest.mark.parametrize("how", SOURCES)
def test_doctor_reports_a_malformed_region_as_a_fail_with_the_fix(
    how: str,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags, named = _bad_region(how, clean_env, monkeypatch)
    code = main(["--doctor", "--json", *flags, "--endpoint-url", NOWHERE])
    out, err = capsys.readouterr()
    assert code == 1
    assert err == ""
    failed = [row for row in json.loads(out) if row["status"] == "FAIL"]
    assert len(failed) == 1, failed  # the rest wait for it: skipped, not failed again
    assert named in failed[0]["detail"]
    assert failed[0]["fix"] == "a region name looks like us-east-1 or eu-west-2"


@pytest.mark.parametrize(
    "flags",
    [
        ["--region", "us-moon-1"],
        ["--region", "us-east-1", "--replica-region", "eu-moon-2"],
    ],
)
def test_a_well_formed_region_botocore_does_not_know_is_refused_at_once(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--list", *flags, "--endpoint-url", NOWHERE])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert "from flag: " in err[0] and "is not a region botocore knows" in err[0]
    assert err[1].startswith("cchain: hint: check its spelling")


def test_a_malformed_replica_region_names_its_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--list", "--replica-region", "us west 2", "--endpoint-url", NOWHERE])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(
        "cchain: error: invalid replica_regions from flag: 'us west 2' is not an AWS region name"
    )


def test_a_per_region_endpoint_name_is_checked_with_its_file_line(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = clean_env / ".cchainrc"
    rc.write_text("[dynamo]\n\nendpoint_url.us-moon-1 = http://127.0.0.1:5\n")
    code = main(["--list", "--endpoint-url", NOWHERE])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(
        f"cchain: error: invalid region_endpoints from {rc} line 3: 'us-moon-1' is not a region"
    )


def test_the_python_api_refuses_a_bad_region_as_a_validation_error() -> None:
    with pytest.raises(RegionNameError, match="region_name: 'eu west 1'") as info:
        CloudChain(region_name="eu west 1")
    assert isinstance(info.value, ValueError)


# -- keys nothing reads ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        (
            "[dynamo]\ntable_name = other\n",
            "line 2: cloudchain reads no key 'table_name' in [dynamo]; did you mean tablename?",
        ),
        (
            "[aws]\nmax_attempt = 3\n",
            "line 2: cloudchain reads no key 'max_attempt' in [aws]; did you mean max_attempts?",
        ),
        (
            "# comment\n[dynamo]\nkeyalias = alias/k\n",
            "line 3: cloudchain reads no key 'keyalias' in [dynamo]; it is read in [IAMKMS]",
        ),
        (
            "region_name = us-east-1\n[dynmo]\ntablename = x\n",
            "line 2: cloudchain reads no section [dynmo]; did you mean [dynamo]?",
        ),
        ("tabelname = x\n", "line 1: cloudchain reads no key 'tabelname' above any [section]"),
    ],
)
def test_a_key_nothing_reads_is_a_warning_naming_file_line_and_nearest_key(
    text: str,
    warning: str,
    clean_env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc = clean_env / ".cchainrc"
    rc.write_text(text)
    main(["--list", "--endpoint-url", NOWHERE, "--connect-timeout", "0.2", "--max-attempts", "1"])
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"cchain: warning: {rc} {warning}"), err
    assert len([line for line in err if "warning" in line]) == 1


def test_the_library_logs_the_warning_and_prints_nothing(
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (clean_env / ".cchainrc").write_text("[dynamo]\ntable_name = other\n")
    # Only what this call logs: no handler an earlier main() left behind.
    monkeypatch.setattr(logging.getLogger("cloudchain"), "handlers", [])
    with caplog.at_level(logging.WARNING, logger="cloudchain"):
        config = load_config()
    assert config.tablename == "safedb"
    assert [r.name for r in caplog.records] == ["cloudchain.config_sources"]
    assert "did you mean tablename?" in caplog.records[0].getMessage()
    assert capsys.readouterr() == ("", "")


def test_a_bad_value_of_a_known_key_stays_an_error_naming_its_line(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = clean_env / ".cchainrc"
    rc.write_text("[aws]\nmax_attempts = lots\n")
    assert main(["--list", "--endpoint-url", NOWHERE]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cchain: error: invalid max_attempts from {rc} line 2: ")


def test_doctor_names_the_stray_key_and_its_nearest(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_env / ".cchainrc").write_text("[dynamo]\ntable_name = other\n")
    main(["--doctor", "--json", "--endpoint-url", NOWHERE, "--connect-timeout", "0.2"])
    config = json.loads(capsys.readouterr().out)[0]
    assert config["status"] == "FAIL"
    assert "line 2: cloudchain reads no key 'table_name' in [dynamo]" in config["detail"]
    assert "did you mean tablename?" in config["detail"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CLOUDCHAIN_ENDPOINT_URL", "not a url"),
        ("CLOUDCHAIN_ENDPOINT_URL", "http://[::1"),
        ("CLOUDCHAIN_ENDPOINT_URL", "http://127.0.0.1:port"),
        ("CLOUDCHAIN_KMS_ENDPOINT_URL", "ftp://127.0.0.1"),
        ("CLOUDCHAIN_ENDPOINT_URL_US_WEST_2", "not a url"),
    ],
)
@pytest.mark.parametrize("action", ["read", "list", "doctor"])
def test_an_endpoint_that_is_not_a_url_is_one_line_naming_its_variable(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    action: str,
) -> None:
    monkeypatch.setenv(variable, value)
    code = main(["--doctor"] if action == "doctor" else ACTIONS[action])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    said = out if action == "doctor" else err
    assert f"environment variable {variable}: {value!r} is not an http(s) URL" in said
    if action != "doctor":
        assert err.startswith("cchain: error: ") and len(err.splitlines()) <= 2


def test_a_per_region_endpoint_that_is_not_a_url_names_its_file_line(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_env / ".cchainrc").write_text("[dynamo]\nendpoint_url.us-west-2 = not a url\n")
    assert main(["--list"]) == 1
    assert "line 2" in capsys.readouterr().err


def test_a_file_of_unknown_keys_warns_one_screen_not_a_flood(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = "".join(f"junk{n} = x\n" for n in range(500))
    (clean_env / ".cchainrc").write_text(f"[dynamo]\n{keys}")
    main(["-e", "web", "--list", "--endpoint-url", NOWHERE, "--max-attempts", "1"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 11 and "and 490 more" in warnings[-1]
