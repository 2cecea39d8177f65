"""The reference module API: module variables, savecreds/readcreds and read_configfile."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import KEY_ALIAS

import cloudchain
from cloudchain import CloudChain, CloudChainConfigError


def test_reference_usage_works_exactly(chain: CloudChain) -> None:
    cloudchain.region_name = "us-east-1"
    cloudchain.tablename = "safedb"
    cloudchain.keyalias = KEY_ALIAS
    cloudchain.savecreds("billing", "alice", "s3cr3t")
    value = cloudchain.readcreds("billing", "alice")
    assert value == "s3cr3t"
    assert isinstance(value, str)


def test_module_variables_are_read_on_every_call(chain: CloudChain) -> None:
    CloudChain(tablename="other").setup()
    cloudchain.keyalias = KEY_ALIAS
    cloudchain.savecreds("billing", "alice", "in-safedb")
    cloudchain.tablename = "other"
    cloudchain.savecreds("billing", "alice", "in-other")
    assert cloudchain.readcreds("billing", "alice") == "in-other"
    cloudchain.tablename = None
    assert cloudchain.readcreds("billing", "alice") == "in-safedb"


def test_unset_variables_fall_back_to_env_then_file(
    chain: CloudChain, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".cchainrc").write_text(f"[IAMKMS]\nkeyalias = {KEY_ALIAS}\n")
    cloudchain.savecreds("billing", "alice", "via-file")
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", "alias/from-env-missing")
    with pytest.raises(CloudChainConfigError, match="alias/from-env-missing"):
        cloudchain.savecreds("billing", "alice", "x")
    cloudchain.keyalias = KEY_ALIAS
    cloudchain.savecreds("billing", "alice", "via-variable")
    assert cloudchain.readcreds("billing", "alice") == "via-variable"


def test_default_instance_is_reused_until_a_variable_changes(chain: CloudChain) -> None:
    from cloudchain.module_api import default_chain

    first = default_chain()
    assert default_chain() is first
    cloudchain.tablename = "changed"
    assert default_chain() is not first
    assert default_chain().config.tablename == "changed"


def test_save_without_any_key_alias_says_where_to_set_it(chain: CloudChain) -> None:
    with pytest.raises(CloudChainConfigError, match="keyalias"):
        cloudchain.savecreds("billing", "alice", "x")


def test_read_configfile_loads_the_module_variables(tmp_path: Path, chain: CloudChain) -> None:
    path = tmp_path / "rc"
    path.write_text(
        f"[dynamo]\nregion_name = us-east-1\ntablename = safedb\n[IAMKMS]\nkeyalias = {KEY_ALIAS}\n"
    )
    loaded = cloudchain.read_configfile(str(path))
    assert loaded == {"region_name": "us-east-1", "tablename": "safedb", "keyalias": KEY_ALIAS}
    assert cloudchain.keyalias == KEY_ALIAS
    cloudchain.savecreds("billing", "alice", "x")
    assert cloudchain.readcreds("billing", "alice") == "x"


def test_read_configfile_defaults_to_home_cchainrc(clean_env: Path) -> None:
    (clean_env / ".cchainrc").write_text("tablename = headerless\n")
    cloudchain.read_configfile()
    assert cloudchain.tablename == "headerless"
