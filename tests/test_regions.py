"""Replica regions: their configuration, where each region's requests go, reads that fail over
and writes that stay home, and setup of the global table and multi-Region key (moto in-process;
tests/e2e/test_regions_e2e.py drives the installed cchain through a fault proxy)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers import KEY_ALIAS, replicate_key_in_moto

import cloudchain
from cloudchain import CloudChain, CloudChainConfigError, Config, table
from cloudchain.clients import Clients
from cloudchain.config_file import unknown_keys
from cloudchain.config_sources import load_config
from cloudchain.results import RegionSetup

HOME, WEST, EU = "us-east-1", "us-west-2", "eu-west-1"


# -- configuration ----------------------------------------------------------------------------


def test_replicas_and_per_region_endpoints_from_the_file(clean_env: Path) -> None:
    rc = clean_env / ".cchainrc"
    rc.write_text(
        "[dynamo]\n"
        "region_name = us-east-1\n"
        "replica_regions = us-west-2, eu-west-1\n"
        "endpoint_url.us-west-2 = http://127.0.0.1:5\n"
        "[IAMKMS]\n"
        "endpoint_url.us-west-2 = http://127.0.0.1:6\n"
    )
    config = load_config()
    assert config.replica_regions == (WEST, EU)
    assert config.region_endpoints == {WEST: "http://127.0.0.1:5"}
    assert config.kms_region_endpoints == {WEST: "http://127.0.0.1:6"}
    assert unknown_keys(rc) == []  # doctor does not flag them


def test_headerless_file_takes_replicas_and_endpoints_too(clean_env: Path) -> None:
    (clean_env / ".cchainrc").write_text(
        "replica_regions = eu-west-1\nendpoint_url.eu-west-1 = http://127.0.0.1:7\n"
    )
    config = load_config()
    assert config.replica_regions == (EU,)
    assert config.region_endpoints == {EU: "http://127.0.0.1:7"}


def test_environment_beats_file_and_flag_beats_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".cchainrc").write_text(
        "[dynamo]\nreplica_regions = us-west-2\nendpoint_url.us-west-2 = http://127.0.0.1:1\n"
    )
    monkeypatch.setenv("CLOUDCHAIN_REPLICA_REGIONS", "eu-west-1 ap-southeast-2")
    monkeypatch.setenv("CLOUDCHAIN_ENDPOINT_URL_US_WEST_2", "http://127.0.0.1:2")
    monkeypatch.setenv("CLOUDCHAIN_KMS_ENDPOINT_URL_EU_WEST_1", "http://127.0.0.1:3")
    monkeypatch.setenv("CLOUDCHAIN_FAILOVER_COOLDOWN", "5")
    config = load_config()
    assert config.replica_regions == (EU, "ap-southeast-2")
    assert config.region_endpoints == {WEST: "http://127.0.0.1:2"}
    assert config.kms_region_endpoints == {EU: "http://127.0.0.1:3"}
    assert config.failover_cooldown == 5.0
    flagged = load_config({"replica_regions": [WEST, WEST, EU], "failover_cooldown": 0.5})
    assert flagged.replica_regions == (WEST, EU)  # in order, once each
    assert flagged.failover_cooldown == 0.5


def test_a_bad_region_name_is_a_config_error_naming_its_source(clean_env: Path) -> None:
    (clean_env / ".cchainrc").write_text("[dynamo]\nreplica_regions = us-west-2, nowhere\n")
    with pytest.raises(CloudChainConfigError, match=r"replica_regions.*'nowhere'"):
        load_config()


def test_a_stray_per_region_variable_is_a_config_error_naming_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLOUDCHAIN_ENDPOINT_URL_BACKUP", "http://127.0.0.1:1")
    with pytest.raises(
        CloudChainConfigError,
        match=r"^invalid region_endpoints from environment variable "
        r"CLOUDCHAIN_ENDPOINT_URL_BACKUP: 'backup'",
    ):
        load_config()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"replica_regions": ["us west 2"]},
        {"region_endpoints": {"Mars-1": "http://127.0.0.1:1"}},
        {"failover_cooldown": -1},
    ],
)
def test_bad_values_in_python_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(cloudchain.ValidationError):
        CloudChain(**kwargs)


# -- where each region's requests go ----------------------------------------------------------


def _endpoints(config: Config, region: str) -> tuple[str | None, str | None]:
    home = Clients(config, None)
    clients = home if region == HOME else home.replica(region)
    return clients.endpoint_for("dynamodb", region), clients.endpoint_for("kms", region)


def test_without_endpoints_every_region_uses_aws() -> None:
    config = Config(region_name=HOME, replica_regions=(WEST,))
    assert _endpoints(config, HOME) == (None, None)
    assert _endpoints(config, WEST) == (None, None)


def test_a_loopback_endpoint_serves_every_region() -> None:
    config = Config(region_name=HOME, endpoint_url="http://127.0.0.1:4566", replica_regions=(WEST,))
    assert _endpoints(config, WEST) == ("http://127.0.0.1:4566", "http://127.0.0.1:4566")


def test_a_remote_endpoint_and_the_kms_endpoint_are_the_home_regions_only() -> None:
    config = Config(
        region_name=HOME,
        endpoint_url="https://dynamodb-fips.us-east-1.amazonaws.com",
        kms_endpoint_url="https://kms-fips.us-east-1.amazonaws.com",
        replica_regions=(WEST,),
    )
    assert _endpoints(config, HOME) == (
        "https://dynamodb-fips.us-east-1.amazonaws.com",
        "https://kms-fips.us-east-1.amazonaws.com",
    )
    assert _endpoints(config, WEST) == (None, None)


def test_a_regions_own_endpoints_win() -> None:
    config = Config(
        region_name=HOME,
        endpoint_url="http://127.0.0.1:1",
        replica_regions=(WEST,),
        region_endpoints={HOME: "http://127.0.0.1:2", WEST: "http://127.0.0.1:3"},
        kms_region_endpoints={WEST: "http://127.0.0.1:4"},
    )
    assert _endpoints(config, HOME) == ("http://127.0.0.1:2", "http://127.0.0.1:2")
    assert _endpoints(config, WEST) == ("http://127.0.0.1:3", "http://127.0.0.1:4")


# -- reads fail over, writes stay home --------------------------------------------------------


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once closed


@pytest.fixture
def replicated(chain: CloudChain) -> None:
    """Secrets in the home region, copied into us-west-2 as a global table and a replicated
    key would (with the AWS API directly, never cloudchain code)."""
    chain.save("svc", "alice", "from-home")
    chain.save("svc", "bob", "bobs-secret", tags={"team": "x"})
    chain.save("svc", "alice", "from-home-2")
    east = boto3.client("dynamodb", region_name=HOME)
    west = boto3.client("dynamodb", region_name=WEST)
    table.create_table(west, "safedb")
    for item in east.scan(TableName="safedb")["Items"]:
        west.put_item(TableName="safedb", Item=item)
    kms = boto3.client("kms", region_name=HOME)
    key_id = kms.describe_key(KeyId=KEY_ALIAS)["KeyMetadata"]["KeyId"]
    replicate_key_in_moto(kms, key_id, WEST, boto3.client("kms", region_name=WEST))


def _failing_over(**kwargs: Any) -> CloudChain:
    """A CloudChain whose home region cannot be reached, with us-west-2 as its replica."""
    settings: dict[str, Any] = {
        "keyalias": KEY_ALIAS,
        "region_name": HOME,
        "replica_regions": [WEST],
        "region_endpoints": {HOME: _closed_port()},
        "max_attempts": 1,
        "connect_timeout": 1,
    }
    return CloudChain(**{**settings, **kwargs})


class SendCounter:
    """Counts the HTTP requests a botocore client tries to send, attempts included."""

    def __init__(self, client: Any) -> None:
        self.sent = 0
        client.meta.events.register("before-send", self._count)

    def _count(self, **_: Any) -> None:
        self.sent += 1


@pytest.fixture
def home_down(replicated: None) -> Iterator[tuple[CloudChain, SendCounter]]:
    chain = _failing_over(failover_cooldown=0.5)
    yield chain, SendCounter(chain._clients.get("dynamodb"))


def test_a_read_fails_over_once_with_one_warning(
    home_down: tuple[CloudChain, SendCounter], caplog: pytest.LogCaptureFixture
) -> None:
    chain, home = home_down
    cloudchain.regions._warned.clear()
    with caplog.at_level(logging.WARNING, logger="cloudchain"):
        assert chain.read("svc", "alice") == "from-home-2"
        assert chain.read("svc", "bob") == "bobs-secret"
    assert chain.failovers == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert HOME in warnings[0] and WEST in warnings[0]
    assert "from-home" not in caplog.text
    # The cooldown: the dead region cost one attempt, not one per read...
    assert home.sent == 1
    time.sleep(0.6)
    # ...and once it is over, the home region is tried again.
    assert chain.read("svc", "alice") == "from-home-2"
    assert home.sent == 2


def test_every_kind_of_read_fails_over(home_down: tuple[CloudChain, SendCounter]) -> None:
    chain, _ = home_down
    assert chain.read("svc", "alice", version=1) == "from-home"
    assert [v.version for v in chain.history("svc", "alice")] == [2, 1]
    assert chain.tags("svc", "bob") == {"team": "x"}
    diff = chain.diff("svc", "alice")
    assert (diff.from_version, diff.to_version, diff.changed) == (1, 2, True)
    assert [e.user for e in chain.list("svc")] == ["alice", "bob"]
    assert chain.export("svc") == {
        "alice": "from-home-2",
        "bob": "bobs-secret",
    }


def test_readcreds_fails_over(
    replicated: None, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    (clean_env / ".cchainrc").write_text(
        f"[dynamo]\nregion_name = {HOME}\nreplica_regions = {WEST}\n"
        f"endpoint_url.{HOME} = {_closed_port()}\nmax_attempts = 1\n"
        f"[IAMKMS]\nkeyalias = {KEY_ALIAS}\n"
    )
    assert cloudchain.readcreds("svc", "alice") == "from-home-2"


def test_a_write_with_the_home_region_down_fails_at_once_and_writes_nothing(
    home_down: tuple[CloudChain, SendCounter],
) -> None:
    chain, _ = home_down
    west = boto3.client("dynamodb", region_name=WEST)
    before = west.scan(TableName="safedb")["Items"]
    for write in (
        lambda: chain.save("svc", "alice", "new-value"),
        lambda: chain.delete("svc", "bob"),
        lambda: chain.rollback("svc", "alice", 1),
        lambda: chain.import_secrets("svc", {"carol": "new-value"}),
        lambda: chain.reencrypt(),
    ):
        with pytest.raises(cloudchain.EndpointError) as info:
            write()
        message = str(info.value)
        assert "\n" not in message and "new-value" not in message
        assert message.startswith(f"the home region {HOME} is unreachable")
        assert "writes are not failed over to replicas, but reads still are" in message
    assert west.scan(TableName="safedb")["Items"] == before
    assert chain.failovers == 0


def test_authoritative_answers_never_fail_over(replicated: None, dynamodb: Any) -> None:
    chain = CloudChain(keyalias=KEY_ALIAS, region_name=HOME, replica_regions=[WEST])
    west = boto3.client("dynamodb", region_name=WEST)
    only_west = {**west.get_item(TableName="safedb", Key=_key("alice"))["Item"]}
    only_west["Username"] = {"S": "carol"}
    west.put_item(TableName="safedb", Item=only_west)
    with pytest.raises(cloudchain.SecretNotFoundError):
        chain.read("svc", "carol")
    # Integrity: the home row altered (its ciphertext moved to another row) is not read around.
    alice = dynamodb.get_item(TableName="safedb", Key=_key("alice"))["Item"]
    bob = dynamodb.get_item(TableName="safedb", Key=_key("bob"))["Item"]
    dynamodb.put_item(TableName="safedb", Item={**bob, "Secret": alice["Secret"]})
    with pytest.raises(cloudchain.IntegrityError):
        chain.read("svc", "bob")
    assert chain.failovers == 0
    assert chain._regions._places[1] is None  # the replica was never even built


def _key(user: str) -> dict[str, Any]:
    return {"Service": {"S": "svc"}, "Username": {"S": user}}


def test_with_the_home_region_up_only_its_two_clients_are_built(replicated: None) -> None:
    chain = CloudChain(keyalias=KEY_ALIAS, region_name=HOME, replica_regions=[WEST, EU])
    assert chain.read("svc", "alice") == "from-home-2"
    assert set(chain._clients._clients) == {("dynamodb", False), ("kms", False)}
    assert chain._regions._places[1:] == [None, None]


def test_when_every_region_fails_the_last_error_is_raised(replicated: None) -> None:
    chain = _failing_over(region_endpoints={HOME: _closed_port(), WEST: _closed_port()})
    with pytest.raises(cloudchain.EndpointError, match="cannot read svc/alice"):
        chain.read("svc", "alice")
    assert chain.failovers == 0


# -- setup ------------------------------------------------------------------------------------


def test_setup_makes_a_global_table_and_a_multi_region_key(aws: None) -> None:
    chain = CloudChain(keyalias=KEY_ALIAS, region_name=HOME, replica_regions=[WEST])
    result = chain.setup(create_key=True)
    assert result.table_created and result.key_created and result.ttl_enabled
    # (moto copies the home key's aliases into its replica, so CreateAlias finds one there.)
    assert result.replicas[0] in (
        RegionSetup(WEST, "added", "replicated", "created"),
        RegionSetup(WEST, "added", "replicated", "exists"),
    )
    east = boto3.client("dynamodb", region_name=HOME)
    described = east.describe_table(TableName="safedb")["Table"]
    assert described["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    home_key = boto3.client("kms", region_name=HOME).describe_key(KeyId=KEY_ALIAS)["KeyMetadata"]
    west_key = boto3.client("kms", region_name=WEST).describe_key(KeyId=KEY_ALIAS)["KeyMetadata"]
    assert home_key["MultiRegion"] and west_key["KeyId"] == home_key["KeyId"]
    again = chain.setup(create_key=True)
    assert not again.key_created and not again.table_created
    assert (again.replicas[0].key, again.replicas[0].alias) == ("exists", "exists")


def test_setup_adds_streams_to_an_existing_single_region_table(aws: None) -> None:
    CloudChain(region_name=HOME).setup()
    result = CloudChain(region_name=HOME, replica_regions=[WEST]).setup()
    assert result.streams_enabled and not result.table_created
    assert result.replicas == (RegionSetup(WEST, "added", "", ""),)


def test_a_single_region_key_is_refused_before_the_table_changes(aws: None) -> None:
    CloudChain(keyalias=KEY_ALIAS, region_name=HOME).setup(create_key=True)
    chain = CloudChain(
        keyalias=KEY_ALIAS, region_name=HOME, replica_regions=[WEST], tablename="other"
    )
    with pytest.raises(CloudChainConfigError, match="single-Region key") as info:
        chain.setup(create_key=True)
    assert info.value.hint is not None and "--create-key" in info.value.hint
    assert "other" not in boto3.client("dynamodb", region_name=HOME).list_tables()["TableNames"]


# -- IAM --------------------------------------------------------------------------------------


def test_the_policy_lets_reads_fail_over_and_keeps_writes_home() -> None:
    chain = CloudChain(region_name=HOME, tablename="t", replica_regions=[WEST, EU])
    arn = "arn:aws:kms:us-east-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef"
    home_items, home_key, items, keys = chain.policy(
        "billing", "write", account="111122223333", key_arn=arn
    )["Statement"]
    assert "dynamodb:PutItem" in home_items["Action"] and "kms:Encrypt" in home_key["Action"]
    assert items["Action"] == ["dynamodb:GetItem", "dynamodb:Query"]
    assert items["Resource"] == [
        "arn:aws:dynamodb:us-west-2:111122223333:table/t",
        "arn:aws:dynamodb:eu-west-1:111122223333:table/t",
    ]
    assert items["Condition"] == home_items["Condition"]
    assert keys["Action"] == ["kms:Decrypt"]
    assert keys["Resource"] == [
        "arn:aws:kms:us-west-2:111122223333:key/mrk-0123456789abcdef0123456789abcdef",
        "arn:aws:kms:eu-west-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef",
    ]
    assert keys["Condition"] == {"StringEquals": {"kms:EncryptionContext:Service": "billing"}}


def test_a_replica_named_as_the_home_region_is_not_read_twice(replicated: None) -> None:
    # `--region us-west-2` with replica_regions = us-west-2: us-west-2 is home, tried once.
    chain = _failing_over(
        region_name=WEST, replica_regions=[WEST], region_endpoints={WEST: _closed_port()}
    )
    sent = SendCounter(chain._clients.get("dynamodb"))
    with pytest.raises(cloudchain.EndpointError):
        chain.read("svc", "alice")
    assert sent.sent == 1
    # nor made a replica of itself
    assert CloudChain(region_name=WEST, replica_regions=[WEST]).setup().replicas == ()
