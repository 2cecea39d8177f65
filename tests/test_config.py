"""Configuration: both file layouts, every source, and the one precedence rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudchain import CloudChain, CloudChainConfigError, Config
from cloudchain.config import kms_endpoint_for
from cloudchain.config_sources import load_config

SECTIONED = """\
[dynamo]
region_name = eu-west-1
endpoint_url = http://file:1
tablename = filetable

[IAMKMS]
keyalias = alias/file
"""

HEADERLESS = """\
region_name = eu-west-1
endpoint_url = http://file:1
tablename = filetable
keyalias = alias/file
"""

FROM_FILE = Config(
    region_name="eu-west-1",
    endpoint_url="http://file:1",
    tablename="filetable",
    keyalias="alias/file",
)


@pytest.fixture
def rc(clean_env: Path) -> Path:
    return clean_env / ".cchainrc"


@pytest.mark.parametrize("text", [SECTIONED, HEADERLESS], ids=["sectioned", "headerless"])
def test_both_file_layouts_load_the_four_reference_keys(rc: Path, text: str) -> None:
    rc.write_text(text)
    assert load_config() == FROM_FILE


def test_example_file_is_the_sectioned_layout_and_loads(tmp_path: Path) -> None:
    example = Path(__file__).parents[1] / ".cchainrc.example"
    config = load_config(path=example)
    assert "[dynamo]" in example.read_text()
    assert config.keyalias == "alias/key"
    assert config.endpoint_url is None


def test_defaults_without_any_file() -> None:
    assert load_config() == Config()
    assert Config().tablename == "safedb"
    assert Config().keyalias is None


def test_cloudchain_config_env_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere.ini"
    other.write_text(SECTIONED)
    monkeypatch.setenv("CLOUDCHAIN_CONFIG", str(other))
    assert load_config() == FROM_FILE


def test_explicit_path_beats_cloudchain_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").write_text("[dynamo]\ntablename = a\n")
    (tmp_path / "b").write_text("[dynamo]\ntablename = b\n")
    monkeypatch.setenv("CLOUDCHAIN_CONFIG", str(tmp_path / "a"))
    assert load_config(path=tmp_path / "b").tablename == "b"


def test_explicitly_named_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CloudChainConfigError, match="does not exist"):
        load_config(path=tmp_path / "missing")


def test_unparseable_file_is_a_one_line_config_error(rc: Path) -> None:
    rc.write_text("[dynamo\nthis is not ini\n")
    with pytest.raises(CloudChainConfigError, match="cannot parse") as info:
        load_config()
    assert "\n" not in str(info.value)


ENV = {
    "region_name": "CLOUDCHAIN_REGION",
    "endpoint_url": "CLOUDCHAIN_ENDPOINT_URL",
    "tablename": "CLOUDCHAIN_TABLE",
    "keyalias": "CLOUDCHAIN_KEY_ALIAS",
}


@pytest.mark.parametrize("field", sorted(ENV))
def test_environment_beats_file_and_flag_beats_environment(
    rc: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    # A region and an endpoint are checked, so their stand-ins are real ones.
    from_env, from_flag = {
        "region_name": ("eu-west-2", "eu-west-3"),
        "endpoint_url": ("http://from-env:1", "http://from-flag:2"),
    }.get(field, ("from-env", "from-flag"))
    rc.write_text(SECTIONED)
    assert getattr(load_config(), field) == getattr(FROM_FILE, field)
    monkeypatch.setenv(ENV[field], from_env)
    assert getattr(load_config(), field) == from_env
    assert getattr(load_config({field: from_flag}), field) == from_flag


@pytest.mark.parametrize("field", sorted(ENV))
def test_empty_value_means_the_default_and_stops_the_lookup(
    rc: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    rc.write_text(SECTIONED)
    monkeypatch.setenv(ENV[field], "")
    assert getattr(load_config(), field) == getattr(Config(), field)
    monkeypatch.setenv(ENV[field], "from-env")
    assert getattr(load_config({field: ""}), field) == getattr(Config(), field)


def test_original_empty_endpoint_means_aws_default(rc: Path) -> None:
    rc.write_text("[dynamo]\nendpoint_url =\n[IAMKMS]\nkeyalias = alias/k\n")
    assert load_config().endpoint_url is None


def test_kms_endpoint_from_its_own_section_or_env(
    rc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc.write_text("[dynamo]\nendpoint_url = http://a:1\n[IAMKMS]\nendpoint_url = http://k:2\n")
    config = load_config()
    assert (config.endpoint_url, config.kms_endpoint_url) == ("http://a:1", "http://k:2")
    monkeypatch.setenv("CLOUDCHAIN_KMS_ENDPOINT_URL", "http://k:3")
    assert load_config().kms_endpoint_url == "http://k:3"


def test_headerless_endpoint_is_dynamodbs_not_kms(rc: Path) -> None:
    rc.write_text("endpoint_url = http://a:1\n")
    config = load_config()
    assert (config.endpoint_url, config.kms_endpoint_url) == ("http://a:1", None)


@pytest.mark.parametrize(
    ("endpoint", "kms", "expected"),
    [
        (None, None, None),
        ("", "", None),
        ("http://127.0.0.1:4566", None, "http://127.0.0.1:4566"),
        ("http://localstack:4566", "http://kms:1", "http://kms:1"),
        ("https://dynamodb.eu-west-1.amazonaws.com", None, None),
        ("https://dynamodb.cn-north-1.amazonaws.com.cn", None, None),
        ("https://vpce-1.dynamodb.us-east-1.vpce.amazonaws.com", None, None),
    ],
)
def test_kms_endpoint_rule(endpoint: str | None, kms: str | None, expected: str | None) -> None:
    assert kms_endpoint_for(endpoint, kms) == expected


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("[aws]\nconnect_timeout = 1.5\n", "connect_timeout", 1.5),
        ("[aws]\nread_timeout = 2\n", "read_timeout", 2.0),
        ("[aws]\nmax_attempts = 2\n", "max_attempts", 2),
    ],
)
def test_numeric_settings_are_parsed(rc: Path, text: str, field: str, expected: float) -> None:
    rc.write_text(text)
    assert getattr(load_config(), field) == expected


@pytest.mark.parametrize("bad", ["0", "-1", "many"])
def test_invalid_number_is_a_config_error_naming_its_source(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("CLOUDCHAIN_MAX_ATTEMPTS", bad)
    with pytest.raises(CloudChainConfigError, match="max_attempts from environment"):
        load_config()


def test_unknown_override_is_refused() -> None:
    with pytest.raises(TypeError, match="tablenmae"):
        load_config({"tablenmae": "x"})


def test_from_config_applies_file_then_keyword_overrides(rc: Path) -> None:
    rc.write_text(SECTIONED)
    chain = CloudChain.from_config(tablename="kw")
    assert chain.config.tablename == "kw"
    assert chain.config.keyalias == "alias/file"


def test_aws_credentials_in_the_file_are_ignored(rc: Path) -> None:
    rc.write_text(SECTIONED + "aws_secret_access_key = nope\n")
    assert load_config() == FROM_FILE


def test_aws_retry_variables_are_honoured_after_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (load_config().max_attempts, load_config().retry_mode) == (5, "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    config = load_config()
    assert (config.max_attempts, config.retry_mode) == (2, "adaptive")
    retries = CloudChain.from_settings(config)._kms.meta.config.retries
    assert (retries["total_max_attempts"], retries["mode"]) == (2, "adaptive")
    monkeypatch.setenv("CLOUDCHAIN_MAX_ATTEMPTS", "7")
    assert load_config().max_attempts == 7
    assert load_config({"max_attempts": 3}).max_attempts == 3


def test_timeouts_reach_the_botocore_clients() -> None:
    config = CloudChain(connect_timeout=1.5, read_timeout=4)._dynamodb.meta.config
    assert (config.connect_timeout, config.read_timeout) == (1.5, 4)
