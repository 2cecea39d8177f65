"""`cchain --doctor`'s checks of the AWS side: the table, the key, each replica region, the
permissions (without writing), and with --write a probe secret saved, read and purged."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from .doctor_state import FAIL, OK, PROBE_SERVICE, Doctor, Failed, Result, Skipped
from .errors import POLICY_HINT, CloudChainError


def check_table(doctor: Doctor) -> str:
    assert doctor.clients is not None and doctor.config is not None
    config, dynamodb = doctor.config, doctor.clients.get("dynamodb")
    try:
        table = dynamodb.describe_table(TableName=config.tablename)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        raise Failed(
            f"table '{config.tablename}' does not exist in region {doctor.clients.region} at "
            f"{doctor.where}",
            "check --region and --endpoint-url first; only if they are right, "
            "`cchain --setup` creates it",
        ) from None
    except Exception as err:
        raise doctor.failed(f"cannot describe table '{config.tablename}'", err) from err
    doctor.table = table
    schema = {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]}
    if schema != {"Service": "HASH", "Username": "RANGE"}:
        raise Failed(
            f"table '{config.tablename}' has the key schema {schema}, not Service (hash) and "
            "Username (range)",
            "point --table at a cloudchain table, or create one with `cchain --setup --table NEW`",
        )
    billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    ttl = dynamodb.describe_time_to_live(TableName=config.tablename)["TimeToLiveDescription"]
    ttl_text = (
        f"TTL on {ttl.get('AttributeName')}"
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
        else "TTL off (deleted secrets stay until purged; `cchain --setup` turns it on)"
    )
    return f"'{config.tablename}' in {doctor.clients.region}: {table['TableStatus']}, {billing}, {ttl_text}"


def check_key(doctor: Doctor) -> str:
    assert doctor.clients is not None and doctor.config is not None
    alias = doctor.config.keyalias
    if not alias:
        raise Skipped("no key alias is configured: reads work, saves need one")
    kms = doctor.clients.get("kms")
    try:
        key = kms.describe_key(KeyId=alias)["KeyMetadata"]
    except kms.exceptions.NotFoundException:
        raise Failed(
            f"the key alias {alias} does not exist in region {doctor.clients.region}",
            "`cchain --setup --create-key` creates it, or set keyalias to an existing alias",
        ) from None
    except Exception as err:
        raise doctor.failed(f"cannot describe key {alias}", err) from err
    if not key.get("Enabled", True) or key.get("KeyState", "Enabled") != "Enabled":
        raise Failed(f"{alias} is {key.get('KeyState', 'disabled')}: {key['Arn']}",
                     "enable the key, or point keyalias at one that is")  # fmt: skip
    doctor.key = key
    kind = ", multi-Region" if key.get("MultiRegion") else ""
    return f"{alias} -> {key['Arn']} (enabled{kind})"


def check_replica(doctor: Doctor, region: str) -> str:
    """The table is an ACTIVE replica in region, and the alias there names the home key's
    replica (same key id), so ciphertexts made at home decrypt there."""
    assert doctor.clients is not None and doctor.config is not None
    name, home = doctor.config.tablename, doctor.clients.region
    listed = {
        r["RegionName"]: r.get("ReplicaStatus", "?") for r in doctor.table.get("Replicas", [])
    }
    setup_fix = f"`cchain --setup --replica-region {region}` adds it"
    if region not in listed:
        raise Failed(f"table '{name}' in {home} lists no replica in {region}", setup_fix)
    if listed[region] != "ACTIVE":
        raise Failed(f"the replica of '{name}' in {region} is {listed[region]}",
                     "wait until it is ACTIVE (`aws dynamodb describe-table`)")  # fmt: skip
    clients = doctor.clients.replica(region)
    dynamodb = clients.get("dynamodb")
    status = doctor.aws(
        f"cannot describe table '{name}' in {region}",
        lambda: dynamodb.describe_table(TableName=name)["Table"]["TableStatus"],
    )
    found = f"table '{name}' is an ACTIVE replica ({status} there)"
    alias = doctor.config.keyalias
    if not alias or not doctor.key:
        return found + "; key not checked (no key alias, or the home key failed)"
    kms = clients.get("kms")
    try:
        key = kms.describe_key(KeyId=alias)["KeyMetadata"]
    except kms.exceptions.NotFoundException:
        raise Failed(
            f"{found}, but the key alias {alias} does not exist in {region}",
            f"`cchain --setup --create-key --replica-region {region}` replicates the key",
        ) from None
    except Exception as err:
        raise doctor.failed(f"cannot describe key {alias} in {region}", err) from err
    if key["KeyId"] != doctor.key["KeyId"]:
        raise Failed(
            f"{found}, but {alias} in {region} is {key['KeyId']}, not a replica of the home "
            f"key {doctor.key['KeyId']}: secrets saved at home do not decrypt there",
            f"point {alias} in {region} at the replica of the home key",
        )
    return f"{found}; {alias} -> {key['Arn']}"


def check_permissions(doctor: Doctor) -> str:
    assert doctor.clients is not None and doctor.config is not None
    config, clients = doctor.config, doctor.clients
    service = doctor.service or PROBE_SERVICE
    probe = f"doctor-probe-{secrets.token_hex(4)}"
    dynamodb, kms = clients.get("dynamodb"), clients.get("kms")
    key = {"Service": {"S": service}, "Username": {"S": probe}}
    context = {"Service": service, "Username": probe, "Version": "0"}
    allowed = []
    try:
        doctor.aws("GetItem", lambda: dynamodb.get_item(TableName=config.tablename, Key=key))
        allowed.append("dynamodb:GetItem")
        if config.keyalias:
            alias = config.keyalias
            blob = doctor.aws(
                "Encrypt",
                lambda: kms.encrypt(KeyId=alias, Plaintext=b"probe", EncryptionContext=context)[
                    "CiphertextBlob"
                ],
            )
            allowed.append("kms:Encrypt")
            doctor.aws(
                "Decrypt", lambda: kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
            )
            allowed.append("kms:Decrypt")
    except Failed as failed:
        done = f" ({', '.join(allowed)} allowed)" if allowed else ""
        raise Failed(failed.detail + done, failed.fix or POLICY_HINT) from None
    return f"{', '.join(allowed)} allowed on service {service}, nothing written"


def write_steps(doctor: Doctor) -> list[Result]:
    """Save, read and purge a probe secret, one result per step."""
    from .chain import CloudChain

    assert doctor.config is not None
    service = doctor.service or PROBE_SERVICE
    user = f"doctor-probe-{secrets.token_hex(4)}"
    chain = CloudChain.from_settings(doctor.config)
    value = secrets.token_hex(16)
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("save", lambda: chain.save(service, user, value, comment="cchain --doctor --write")),
        ("read", lambda: chain.read(service, user) == value or _mismatch()),
        ("purge", lambda: chain.purge(service, user, force=True)),
    ]
    results = []
    for step, call in steps:
        try:
            call()
            results.append(Result(f"write: {step}", OK, f"{step} {service}/{user}"))
        except CloudChainError as err:
            results.append(Result(f"write: {step}", FAIL, str(err), err.hint or POLICY_HINT))
            break
    return results


def _mismatch() -> bool:
    raise CloudChainError("the probe read back differently from what was saved")
