"""`cchain --doctor`: the set-up checks, as data. Each check has a name, the checks it needs
to have passed, and a function that returns what it found and, on failure, the fix. The CLI
only prints the results.

A failing check never stops a later one that does not depend on it; one that does is skipped,
naming what it waits for. Nothing is written unless asked (write=True), and then only a probe
secret, which is purged again.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from .clients import Clients
from .config import SETTINGS, Config, config_path, explain_config, unknown_keys
from .errors import POLICY_HINT, CloudChainError, credentials_hint, translate

OK, FAIL, SKIP = "ok", "FAIL", "skip"
PROBE_SERVICE = "cloudchain-doctor"


@dataclass(frozen=True)
class Result:
    """What one check found."""

    check: str
    status: str  # OK, FAIL or SKIP
    detail: str
    fix: str = ""


class Failed(Exception):
    """A check failed: detail says what was found, fix what to do. usable: what it checks
    can still be used by the checks that depend on it (a config file with a stray key)."""

    def __init__(self, detail: str, fix: str = "", *, usable: bool = False) -> None:
        super().__init__(detail)
        self.detail, self.fix, self.usable = detail, fix, usable


class Skipped(Exception):
    """A check does not apply here."""


@dataclass
class Doctor:
    """The checks' shared state: the settings as given, and what earlier checks built."""

    overrides: Mapping[str, Any]
    path: str | None = None
    service: str | None = None  # probe this service instead of PROBE_SERVICE
    write: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    config: Config | None = None
    sources: dict[str, str] = field(default_factory=dict)
    clients: Clients | None = None
    table: dict[str, Any] = field(default_factory=dict)  # the home table, described
    key: dict[str, Any] = field(default_factory=dict)  # the home key's metadata

    @property
    def where(self) -> str:
        """The endpoint, for messages."""
        assert self.config is not None
        return self.config.endpoint_url or "AWS's regional endpoint"

    def failed(self, doing: str, err: Exception) -> Failed:
        """Turn an AWS error into Failed, with cloudchain's message and hint."""
        assert self.config is not None and self.clients is not None
        translated = translate(err, doing, self.config.endpoint_url, self.clients.region)
        if translated is None:
            return Failed(f"{doing}: {type(err).__name__}")
        return Failed(str(translated), translated.hint or "")

    def aws(self, doing: str, call: Callable[[], Any]) -> Any:
        """Run an AWS call; a failure becomes Failed."""
        try:
            return call()
        except Exception as err:
            raise self.failed(doing, err) from err


def check_config(doctor: Doctor) -> str:
    path, named = config_path(doctor.path, doctor.environ)
    try:
        doctor.config, doctor.sources = explain_config(
            doctor.overrides, path=doctor.path, environ=doctor.environ
        )
    except CloudChainError as err:
        raise Failed(str(err), err.hint or "fix the file, or name another with --config") from None
    if not path.exists():
        return f"no config file at {path} (none is needed: defaults and the environment apply)"
    unknown = unknown_keys(path)
    if unknown:
        raise Failed(
            f"{path} parsed, but cloudchain reads none of: {', '.join(unknown)}",
            "remove or correct those keys (see docs/configuration.md)",
            usable=True,
        )
    return f"{path}: parsed, no unknown keys" + (" (named explicitly)" if named else "")


def _source(doctor: Doctor, name: str) -> str:
    """Where a setting came from, naming the variable when it was the environment."""
    source = doctor.sources[name]
    if source == "environment":
        setting = SETTINGS[name]
        variable = setting.env if setting.env in doctor.environ else setting.aws_env
        return f"environment {variable}"
    return source if source in ("flag", "default") else f"file {source}"


def check_settings(doctor: Doctor) -> str:
    config = doctor.config
    assert config is not None
    doctor.clients = clients = Clients(config, None)
    region = clients.region
    region_from = _source(doctor, "region_name")
    if region_from == "default":
        region_from = (
            "the AWS chain"
            if doctor.environ.get("AWS_REGION") or doctor.environ.get("AWS_DEFAULT_REGION")
            else "default"
        )
    profile = config.profile_name or doctor.environ.get("AWS_PROFILE") or "default"
    profile_from = doctor.sources["profile_name"]  # only ever a flag or the default
    if profile_from == "default" and doctor.environ.get("AWS_PROFILE"):
        profile_from = "environment AWS_PROFILE"
    shown = [
        f"region {region} ({region_from})",
        f"endpoint {config.endpoint_url or 'AWS'} ({_source(doctor, 'endpoint_url')})",
        f"table {config.tablename} ({_source(doctor, 'tablename')})",
        f"key alias {config.keyalias or '-'} ({_source(doctor, 'keyalias')})",
        f"profile {profile} ({profile_from})",
    ]
    return ", ".join(shown)


def check_credentials(doctor: Doctor) -> str:
    assert doctor.clients is not None and doctor.config is not None
    try:
        method = doctor.clients.credentials_method()
    except Exception as err:  # a broken profile or SSO cache: botocore says which
        raise Failed(str(err), credentials_hint(doctor.config.endpoint_url)) from None
    if method is None:
        raise Failed("no AWS credentials were found", credentials_hint(doctor.config.endpoint_url))
    sts = doctor.clients.get("sts", quick=True)
    arn = doctor.aws("cannot ask STS who is calling", lambda: sts.get_caller_identity()["Arn"])
    return f"{arn} (credentials from {method})"


def check_endpoint(doctor: Doctor) -> str:
    assert doctor.clients is not None and doctor.config is not None
    url = doctor.clients.get("dynamodb").meta.endpoint_url
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    started = time.perf_counter()
    try:
        with socket.create_connection((parsed.hostname, port), doctor.config.connect_timeout):
            pass
    except OSError as err:
        raise Failed(
            f"cannot connect to {url}: {err.strerror or err}",
            "check --endpoint-url, --region and the network (a proxy, a VPC endpoint)",
        ) from None
    return f"{url} reachable: TCP connect in {(time.perf_counter() - started) * 1000:.1f} ms"


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


def check_agent(doctor: Doctor) -> str:
    from .agent.client import AgentClient, AgentUnavailable

    try:
        agent = AgentClient.from_environment(doctor.environ)
        if agent is None:
            raise Skipped("CLOUDCHAIN_AGENT is not set: reads go to AWS directly")
        status = agent.health().get("status")
    except AgentUnavailable as why:
        raise Failed(
            str(why), "start cchain-agent, or unset CLOUDCHAIN_AGENT (reads then go to AWS)"
        ) from None
    if status != "ok":
        raise Failed(f"the agent at {agent.address} says {status!r}", "look at its log")
    return f"{agent.address} is healthy"


@dataclass(frozen=True)
class Check:
    """One check: its name, the checks it needs, and what it does."""

    name: str
    run: Callable[[Doctor], str]
    needs: tuple[str, ...] = ()


CHECKS: tuple[Check, ...] = (
    Check("config", check_config),
    Check("settings", check_settings, ("config",)),
    Check("credentials", check_credentials, ("settings",)),
    Check("endpoint", check_endpoint, ("settings",)),
    Check("table", check_table, ("credentials", "endpoint")),
    Check("key", check_key, ("credentials", "endpoint")),
    Check("permissions", check_permissions, ("table",)),
    Check("agent", check_agent),
)


def examine(doctor: Doctor, checks: tuple[Check, ...] = CHECKS) -> list[Result]:
    """Run every check in order and return one result each (more with doctor.write)."""
    results: list[Result] = []
    passed: set[str] = set()
    for check in checks:
        waiting = [n for n in check.needs if n not in passed]
        if waiting:
            results.append(Result(check.name, SKIP, f"needs {' and '.join(waiting)} first"))
            continue
        try:
            results.append(Result(check.name, OK, check.run(doctor)))
            passed.add(check.name)
        except Skipped as skipped:
            results.append(Result(check.name, SKIP, str(skipped)))
        except Failed as failed:
            results.append(Result(check.name, FAIL, failed.detail, failed.fix))
            if failed.usable:
                passed.add(check.name)
    replicas = doctor.config.replica_regions if doctor.config and "table" in passed else ()
    home = doctor.clients.region if doctor.clients else None
    for region in (r for r in replicas if r != home):  # one line each, after the home table
        try:
            results.append(Result(f"replica {region}", OK, check_replica(doctor, region)))
        except Failed as failed:
            results.append(Result(f"replica {region}", FAIL, failed.detail, failed.fix))
    if doctor.write:
        if {"permissions", "key"} <= passed:
            results.extend(write_steps(doctor))
        else:
            results.append(Result("write", SKIP, "needs key and permissions first"))
    return results
