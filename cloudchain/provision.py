"""`cchain --setup`: the table, its TTL, the key, and their replicas in other regions.

Everything looks before it creates, so running it again changes nothing and says so. With
replica regions:

- the home table is created with streams (NEW_AND_OLD_IMAGES), which global tables need, and
  an existing one gets them;
- each replica is added with UpdateTable ReplicaUpdates, unless the home table lists it already,
  waiting until the table is ACTIVE between steps;
- with a key to create, it is a multi-Region key, replicated with ReplicateKey into each region
  where DescribeKey finds neither the alias nor the key, and the same alias is made there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import crypto, table
from .clients import Clients
from .config import Config
from .errors import CloudChainConfigError
from .results import RegionSetup, SetupResult

# How long to wait for a table, or a replica of it, to become ACTIVE (AWS: minutes).
ACTIVE_WAIT = 30 * 60


def _wait_active(dynamodb: Any, name: str, replica: str | None = None) -> None:
    """Wait until the table is ACTIVE, and the replica in region `replica` too, if listed."""
    deadline = time.monotonic() + ACTIVE_WAIT
    while True:
        described = dynamodb.describe_table(TableName=name)["Table"]
        replicas = {r["RegionName"]: r.get("ReplicaStatus") for r in described.get("Replicas", [])}
        if described["TableStatus"] == "ACTIVE" and replicas.get(replica, "ACTIVE") == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise CloudChainConfigError(f"table '{name}' did not become ACTIVE in time")
        time.sleep(5)


def _streams_on(dynamodb: Any, name: str) -> bool:
    """Turn on the streams global tables need, unless they are on; return whether it did."""
    described = dynamodb.describe_table(TableName=name)["Table"]
    if described.get("StreamSpecification", {}).get("StreamEnabled"):
        return False
    dynamodb.update_table(TableName=name, StreamSpecification=table.STREAMS)
    _wait_active(dynamodb, name)
    return True


def _home_key(kms: Any, alias: str, multi_region: bool) -> tuple[str, bool]:
    """The key behind alias in the home region, created if missing; return its id and whether
    it was created."""
    try:
        key = kms.describe_key(KeyId=alias)["KeyMetadata"]
    except kms.exceptions.NotFoundException:
        created = kms.create_key(
            Description="cloudchain secrets key",
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",
            MultiRegion=multi_region,
        )["KeyMetadata"]
        kms.create_alias(AliasName=alias, TargetKeyId=created["KeyId"])
        return str(created["KeyId"]), True
    if multi_region and not key.get("MultiRegion", False):
        raise CloudChainConfigError(
            f"{alias} is a single-Region key, which cannot be replicated",
            hint="create a multi-Region key under a new alias with `--setup --create-key "
            "--replica-region ...`, then `cchain --reencrypt` under it",
        )
    return str(key["KeyId"]), False


def _replica_key(home_kms: Any, kms: Any, alias: str, key_id: str, region: str) -> tuple[str, str]:
    """The replica of key_id in region, and the alias there; return what was done with each."""
    if crypto.key_exists(kms, alias):
        return "exists", "exists"
    key = "exists"
    if not crypto.key_exists(kms, key_id):
        home_kms.replicate_key(KeyId=key_id, ReplicaRegion=region)
        key = "replicated"
    try:
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    except kms.exceptions.AlreadyExistsException:
        return key, "exists"  # another setup made it since DescribeKey looked
    return key, "created"


def plan(clients: Clients, config: Config, create_key: bool) -> Callable[[], SetupResult]:
    """Check what setup needs before any AWS call, and return the setup to run: the table
    (and with create_key the key) in the home region and every replica region."""
    alias = config.keyalias
    if create_key and (not alias or not alias.startswith("alias/")):
        raise CloudChainConfigError(
            f"cannot create a key: the key alias {alias!r} must be set and start with "
            "alias/ (keyalias under [IAMKMS], CLOUDCHAIN_KEY_ALIAS or --key-alias)"
        )
    home = clients.region
    replicas = {r: clients.replica(r) for r in config.replica_regions if r != home}
    return lambda: setup(clients, replicas, config.tablename, alias if create_key else None)


def setup(
    home: Clients,
    replicas: dict[str, Clients],
    name: str,
    alias: str | None,
) -> SetupResult:
    """Create what is missing in the home region and each replica region (alias None: no key)."""
    # The key first: a single-Region key that cannot be replicated stops setup before the
    # table changes.
    key_id, key_created = ("", False)
    if alias is not None:
        key_id, key_created = _home_key(home.get("kms"), alias, multi_region=bool(replicas))
    dynamodb = home.get("dynamodb")
    table_created = table.create_table(dynamodb, name, streams=bool(replicas))
    streams_enabled = bool(replicas) and not table_created and _streams_on(dynamodb, name)
    ttl_enabled = table.enable_ttl(dynamodb, name)
    listed = {
        r["RegionName"]
        for r in dynamodb.describe_table(TableName=name)["Table"].get("Replicas", [])
    }
    done = []
    for region, clients in replicas.items():
        state = "exists"
        if region not in listed:
            dynamodb.update_table(
                TableName=name, ReplicaUpdates=[{"Create": {"RegionName": region}}]
            )
            _wait_active(dynamodb, name, region)
            state = "added"
        key, alias_state = ("", "")
        if alias is not None:
            key, alias_state = _replica_key(
                home.get("kms"), clients.get("kms"), alias, key_id, region
            )
        done.append(RegionSetup(region, state, key, alias_state))
    return SetupResult(
        table_created, key_created, ttl_enabled, tuple(done), streams_enabled, home.region
    )
