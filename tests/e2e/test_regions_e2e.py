"""Replica regions end to end: the installed cchain against a moto server, which keeps regions
apart, with each region's endpoint behind a fault proxy that records every request.

moto does not replicate (it ignores ReplicaUpdates), so each part is checked where it can be
seen: setup by the exact requests it sends, and failover by seeding the replica region's table
with the AWS API, as the global table would, and then failing the home region at the proxy.
moto cannot decrypt under a multi-Region key (its ciphertext header keeps 36 bytes of a
40-character mrk- id), so the failover tests use an ordinary key that moto's ReplicateKey copies
into the replica region, and check that its ciphertexts decrypt there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy
from helpers import KEY_ALIAS, replicate_key_in_moto
from support import Emulator, Result, running_agent

from cloudchain import CloudChain, table

pytestmark = pytest.mark.e2e

HOME, WEST, EU = "us-east-1", "us-west-2", "eu-west-1"
SECRETS = {"db_password": "pa$$ word", "api_token": "t0k3n-ABC"}
READ_BACK = (
    "import cloudchain, sys\n"
    "for user in sys.argv[1:]:\n"
    "    print(cloudchain.readcreds('app', user))\n"
)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# -- setup --------------------------------------------------------------------------------------


class GlobalTables:
    """What AWS would list in DescribeTable once ReplicaUpdates Create was sent: moto ignores
    the request, so the proxy adds the replica to moto's reply (status ACTIVE)."""

    def __init__(self) -> None:
        self.replicas: dict[str, list[str]] = {}

    def rewrite(self, operation: str, region: str, reply: bytes) -> bytes:
        if operation != "DescribeTable":
            return reply
        described = json.loads(reply)
        name = described.get("Table", {}).get("TableName")
        listed = self.replicas.get(f"{region}/{name}")
        if not listed:
            return reply
        described["Table"]["Replicas"] = [
            {"RegionName": r, "ReplicaStatus": "ACTIVE"} for r in listed
        ]
        return json.dumps(described).encode()

    def policy(self, operation: str, count: int, body: bytes) -> str:
        if operation == "UpdateTable":
            request = json.loads(body)
            for update in request.get("ReplicaUpdates", []):
                # Sent to the home region: the only region this test's tables are made in.
                key = f"{HOME}/{request['TableName']}"
                self.replicas.setdefault(key, []).append(update["Create"]["RegionName"])
        return "forward"


@pytest.fixture
def recorded(emulator: Emulator) -> Iterator[tuple[FaultProxy, Emulator, GlobalTables]]:
    """Every region's requests through one recording proxy (a loopback endpoint serves every
    region), with DescribeTable listing the replicas that setup asked for."""
    tables = GlobalTables()
    with FaultProxy(_port(emulator.url), tables.policy, tables.rewrite) as proxy:
        env = {**emulator.env, "CLOUDCHAIN_ENDPOINT_URL": proxy.url}
        yield proxy, Emulator(proxy.url, env), tables


def _bodies(proxy: FaultProxy, operation: str) -> list[tuple[str, dict[str, Any]]]:
    return [(r.region, json.loads(r.body)) for r in proxy.requests if r.operation == operation]


def test_setup_makes_a_global_table_and_a_multi_region_key_then_changes_nothing(
    recorded: tuple[FaultProxy, Emulator, GlobalTables], emulator: Emulator
) -> None:
    proxy, through, _ = recorded
    args = ["--setup", "--create-key", "--key-alias", "alias/global", "--table", "global",
            "--replica-region", WEST, "--replica-region", EU]  # fmt: skip
    first = through.run(*args)
    assert first.code == 0, first.err
    assert first.err == (
        f"cchain: {HOME} (home): table 'global' created; key alias/global created\n"
        f"cchain: {WEST}: table 'global' replica added; key replicated, alias/global created\n"
        f"cchain: {EU}: table 'global' replica added; key replicated, alias/global created\n"
    ) or first.err == (  # moto copies the home key's aliases along with it (see helpers)
        f"cchain: {HOME} (home): table 'global' created; key alias/global created\n"
        f"cchain: {WEST}: table 'global' replica added; key replicated, alias/global exists\n"
        f"cchain: {EU}: table 'global' replica added; key replicated, alias/global exists\n"
    )
    # The exact requests: the table with streams, then one replica at a time, ACTIVE between.
    [(region, created)] = _bodies(proxy, "CreateTable")
    assert region == HOME
    assert created["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    assert created["BillingMode"] == "PAY_PER_REQUEST"
    assert _bodies(proxy, "UpdateTable") == [
        (HOME, {"TableName": "global", "ReplicaUpdates": [{"Create": {"RegionName": WEST}}]}),
        (HOME, {"TableName": "global", "ReplicaUpdates": [{"Create": {"RegionName": EU}}]}),
    ]
    order = [r.operation for r in proxy.requests if r.region == HOME]
    first_update = order.index("UpdateTable")
    assert "DescribeTable" in order[first_update + 1 : order.index("UpdateTable", first_update + 1)]
    [(region, key)] = _bodies(proxy, "CreateKey")
    assert (region, key["MultiRegion"], key["KeySpec"]) == (HOME, True, "SYMMETRIC_DEFAULT")
    assert [(r, b["ReplicaRegion"]) for r, b in _bodies(proxy, "ReplicateKey")] == [
        (HOME, WEST),
        (HOME, EU),
    ]
    assert sorted(r for r, b in _bodies(proxy, "CreateAlias")) == sorted([HOME, WEST, EU])
    assert {b["AliasName"] for _, b in _bodies(proxy, "CreateAlias")} == {"alias/global"}
    # Each region of the moto server has the key under the alias: the home key's replica.
    home_key = emulator.client("kms").describe_key(KeyId="alias/global")["KeyMetadata"]
    assert home_key["MultiRegion"]
    for region in (WEST, EU):
        there = emulator.client("kms", region).describe_key(KeyId="alias/global")["KeyMetadata"]
        assert there["KeyId"] == home_key["KeyId"]

    # Run again: it looks in each region, and creates nothing.
    sent = len(proxy.requests)
    again = through.run(*args)
    assert again.code == 0, again.err
    assert again.err == (
        f"cchain: {HOME} (home): table 'global' already exists; key alias/global already exists\n"
        f"cchain: {WEST}: table 'global' replica exists; key exists, alias/global exists\n"
        f"cchain: {EU}: table 'global' replica exists; key exists, alias/global exists\n"
        "cchain: nothing to change\n"
    )
    second = proxy.requests[sent:]
    made = {r.operation for r in second}
    assert not made & {"CreateTable", "UpdateTable", "CreateKey", "ReplicateKey", "CreateAlias"}
    assert {r.region for r in second if r.operation == "DescribeKey"} == {HOME, WEST, EU}


def test_setup_turns_an_existing_table_into_a_global_one(
    recorded: tuple[FaultProxy, Emulator, GlobalTables],
) -> None:
    proxy, through, _ = recorded
    result = through.run("--setup", "--replica-region", WEST)  # the fixture's plain table
    assert result.code == 0, result.err
    assert result.err == (
        f"cchain: {HOME} (home): table 'safedb' already exists; streams (NEW_AND_OLD_IMAGES) "
        "enabled for the global table\n"
        f"cchain: {WEST}: table 'safedb' replica added\n"
    )
    assert _bodies(proxy, "UpdateTable") == [
        (HOME, {"TableName": "safedb", "StreamSpecification": {
            "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}}),
        (HOME, {"TableName": "safedb", "ReplicaUpdates": [{"Create": {"RegionName": WEST}}]}),
    ]  # fmt: skip
    assert not proxy.made()["CreateTable"]


def test_setup_refuses_to_replicate_a_single_region_key(
    recorded: tuple[FaultProxy, Emulator, GlobalTables],
) -> None:
    proxy, through, _ = recorded
    result = through.run("--setup", "--create-key", "--replica-region", WEST)
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0] == (
        f"cchain: error: {KEY_ALIAS} is a single-Region key, which cannot be replicated"
    )
    assert lines[1].startswith("cchain: hint: create a multi-Region key under a new alias")
    assert len(lines) == 2
    assert not proxy.made()["UpdateTable"] and not proxy.made()["ReplicateKey"]


def test_doctor_checks_each_replica_region(
    recorded: tuple[FaultProxy, Emulator, GlobalTables], emulator: Emulator
) -> None:
    _, through, _ = recorded
    flags = ["--key-alias", "alias/global", "--table", "global"]
    made = through.run("--setup", "--create-key", *flags, "--replica-region", WEST)
    assert made.code == 0, made.err
    table.create_table(emulator.client("dynamodb", WEST), "global")  # what AWS replication makes
    doctor = through.run("--doctor", *flags, "--replica-region", WEST, "--replica-region", EU)
    assert doctor.code == 1
    lines = {line.split()[2]: line for line in doctor.out.splitlines() if " replica " in line}
    assert lines[WEST].startswith(f"ok    replica {WEST}  table 'global' is an ACTIVE replica")
    assert f"alias/global -> arn:aws:kms:{WEST}:" in lines[WEST]
    assert lines[EU] == (
        f"FAIL  replica {EU}  table 'global' in {HOME} lists no replica in {EU}; "
        f"fix: `cchain --setup --replica-region {EU}` adds it"
    )


# -- reads fail over ----------------------------------------------------------------------------


class Regions:
    """The home region behind one proxy and the replica behind another, both recording."""

    def __init__(self, emulator: Emulator, home: FaultProxy, west: FaultProxy) -> None:
        self.home, self.west = home, west
        self.fault = "forward"  # what the home proxy does with every request
        env = {
            **emulator.env,
            "CLOUDCHAIN_REGION": HOME,
            "CLOUDCHAIN_REPLICA_REGIONS": WEST,
            f"CLOUDCHAIN_ENDPOINT_URL_{HOME.upper().replace('-', '_')}": home.url,
            f"CLOUDCHAIN_ENDPOINT_URL_{WEST.upper().replace('-', '_')}": west.url,
            "CLOUDCHAIN_MAX_ATTEMPTS": "2",  # "still failing after retries", quickly
            "CLOUDCHAIN_READ_TIMEOUT": "1",
            "CLOUDCHAIN_CONNECT_TIMEOUT": "1",
        }
        self.cchain = Emulator(emulator.url, env)

    def policy(self, operation: str, count: int, body: bytes) -> str:
        return self.fault

    def run(self, *args: str, **kwargs: Any) -> Result:
        return self.cchain.run(*args, **kwargs)


@pytest.fixture
def regions(emulator: Emulator) -> Iterator[Regions]:
    """Secrets saved in the home region, and copied to us-west-2 as replication would."""
    chain = CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS)
    for user, value in SECRETS.items():
        chain.save("app", user, value)
    chain.save("app", "db_password", "v2!")
    east, west = emulator.client("dynamodb"), emulator.client("dynamodb", WEST)
    table.create_table(west, "safedb")  # in the test's own code: what replication provides
    for item in east.scan(TableName="safedb")["Items"]:
        west.put_item(TableName="safedb", Item=item)
    kms = emulator.client("kms")
    key_id = kms.describe_key(KeyId=KEY_ALIAS)["KeyMetadata"]["KeyId"]
    replicate_key_in_moto(kms, key_id, WEST, emulator.client("kms", WEST))
    port = _port(emulator.url)
    holder: list[Regions] = []
    with (
        FaultProxy(port, lambda *a: holder[0].policy(*a)) as home,
        FaultProxy(port) as west_proxy,
    ):
        holder.append(Regions(emulator, home, west_proxy))
        yield holder[0]


EXPECTED = {"db_password": "v2!", "api_token": "t0k3n-ABC"}


def _one_failover_warning(err: str) -> None:
    warnings = [line for line in err.splitlines() if line.startswith("cchain: warning:")]
    assert warnings == [
        f"cchain: warning: {HOME} did not answer; reading from the replica in {WEST}, "
        "which may lag by a second"
    ], err
    assert all(value not in err for value in [*EXPECTED.values(), *SECRETS.values()])


def test_a_replica_decrypts_what_the_home_region_encrypted(regions: Regions) -> None:
    # The premise of every test below: the copied key decrypts home ciphertexts in us-west-2.
    assert regions.run("-e", "app", "-u", "api_token", "--read", "--region", WEST).out == (
        "t0k3n-ABC\n"
    )


@pytest.mark.parametrize("fault", ["drop", "hang", "error500", "throttle"])
def test_reads_fail_over_to_the_replica(regions: Regions, fault: str, tmp_path: Path) -> None:
    regions.fault = fault
    template = tmp_path / "app.conf.j2"
    template.write_text('password={{ secret("app", "db_password") }}\n')
    runs = {
        "read": (("-e", "app", "-u", "db_password", "--read"), {}),
        "export": (("-e", "app", "--export", "--format", "json"), {}),
        "exec": (("-e", "app", "--exec", "--", "sh", "-c",
                  'printf "%s|%s" "$DB_PASSWORD" "$API_TOKEN"'), {}),
        "render": (("--render", str(template)), {}),
        "readcreds": (("-c", READ_BACK, "db_password", "api_token"), {"program": "python"}),
    }  # fmt: skip
    # Five separate processes, run side by side: each fails over on its own.
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {name: pool.submit(regions.run, *args, **kw) for name, (args, kw) in runs.items()}
    done = {name: future.result() for name, future in futures.items()}
    expected_out = {
        "read": "v2!\n",
        "exec": "v2!|t0k3n-ABC",
        "render": "password=v2!\n",
        "readcreds": "v2!\nt0k3n-ABC\n",
    }
    for name, result in done.items():
        assert result.code == 0, (name, result.err)
        if name == "export":
            assert json.loads(result.out) == EXPECTED
        else:
            assert result.out == expected_out[name], name
        if name != "readcreds":  # Python's logging has no handler there: nothing is printed
            _one_failover_warning(result.err)
    assert regions.home.made(HOME)["GetItem"] + regions.home.made(HOME)["Query"] >= 4
    assert regions.west.made(WEST)["GetItem"] >= 3


def test_authoritative_answers_in_the_home_region_never_fail_over(regions: Regions) -> None:
    west = regions.cchain.client("dynamodb", WEST)
    only_west = west.get_item(
        TableName="safedb", Key={"Service": {"S": "app"}, "Username": {"S": "api_token"}}
    )["Item"]
    west.put_item(TableName="safedb", Item={**only_west, "Username": {"S": "west_only"}})
    missing = regions.run("-e", "app", "-u", "west_only", "--read")
    assert missing.code == 3 and missing.out == ""
    assert missing.err.startswith("cchain: error: no secret for app/west_only")
    regions.fault = "denied"
    denied = regions.run("-e", "app", "-u", "api_token", "--read")
    assert denied.code == 1 and denied.out == ""
    assert "access denied for GetItem" in denied.err.splitlines()[0]
    assert "warning" not in denied.err
    assert sum(regions.west.made().values()) == 0  # the replica was never asked


def test_a_dead_region_costs_one_attempt_while_its_cooldown_lasts(regions: Regions) -> None:
    regions.fault = "drop"
    users = ["db_password", "api_token"] * 3
    env = {"CLOUDCHAIN_MAX_ATTEMPTS": "1"}
    result = regions.run("-c", READ_BACK, *users, program="python", env=env)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [EXPECTED[u] for u in users]
    assert regions.home.made(HOME)["GetItem"] == 1
    assert regions.west.made(WEST)["GetItem"] == 6
    # The control: without a cooldown, every read tries the dead region first.
    again = regions.run(
        "-c", READ_BACK, *users, program="python",
        env={**env, "CLOUDCHAIN_FAILOVER_COOLDOWN": "0"},
    )  # fmt: skip
    assert again.code == 0, again.err
    assert regions.home.made(HOME)["GetItem"] == 1 + 6


def test_a_write_with_the_home_region_down_fails_fast_in_one_line(regions: Regions) -> None:
    regions.fault = "drop"
    for args in (("--save", "-"), ("--delete",), ("--rollback", "1")):
        started = time.monotonic()
        result = regions.run("-e", "app", "-u", "db_password", *args, stdin="new-value")
        assert time.monotonic() - started < 10
        assert result.code == 1
        error, *rest = result.err.splitlines()
        assert error.startswith(f"cchain: error: the home region {HOME} is unreachable (")
        assert error.endswith("); writes are not failed over to replicas, but reads still are")
        assert len(rest) <= 1 and all(line.startswith("cchain: hint:") for line in rest)
        assert "new-value" not in result.err
    west = regions.west.made(WEST)
    assert not west["PutItem"] and not west["UpdateItem"] and not west["DeleteItem"]
    assert regions.run("-e", "app", "-u", "db_password", "--read").out == "v2!\n"


def test_with_no_replicas_a_read_makes_the_same_requests_as_before(
    regions: Regions, emulator: Emulator
) -> None:
    single = {k: v for k, v in regions.cchain.env.items() if k != "CLOUDCHAIN_REPLICA_REGIONS"}
    result = regions.run("-e", "app", "-u", "db_password", "--read", env=single)
    replicated = regions.run("-e", "app", "-u", "db_password", "--read")
    assert (result.out, replicated.out) == ("v2!\n", "v2!\n")
    # One GetItem and one Decrypt each, as a read always made; the replica is never asked.
    assert dict(regions.home.made()) == {"GetItem": 2, "Decrypt": 2}
    assert sum(regions.west.made().values()) == 0


def test_the_agent_fails_over_and_counts_it(regions: Regions, tmp_path: Path) -> None:
    with running_agent(regions.cchain, tmp_path) as agent:
        regions.fault = "drop"
        status, _, body = agent.curl("/v1/secret?service=app&user=db_password")
        assert (status, body) == (200, b"v2!")
        status, _, metrics = agent.curl("/metrics")
        assert status == 200
        assert b"cloudchain_agent_failovers_total 1.0" in metrics
        agent.stop()
    log = agent.log.read_text()
    assert f"{HOME} did not answer; reading from the replica in {WEST}" in log
    assert "v2!" not in log


def test_an_error_names_the_home_regions_own_endpoint(emulator: Emulator) -> None:
    env = {k: v for k, v in emulator.env.items() if k != "CLOUDCHAIN_ENDPOINT_URL"}
    env["CLOUDCHAIN_ENDPOINT_URL_US_EAST_1"] = emulator.url
    result = Emulator(emulator.url, env).run("-e", "app", "-u", "x", "--read", "--table", "nope")
    assert result.code == 1
    assert result.err.splitlines()[0] == (
        "cchain: error: cannot read app/x from table 'nope': the table does not exist in "
        f"region {HOME} at {emulator.url} (ResourceNotFoundException)"
    )
