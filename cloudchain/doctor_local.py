"""`cchain --doctor`'s checks of this machine's side: the config file, the settings in force,
the credentials, the endpoint's reachability, and the agent."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

from .clients import Clients
from .config import SETTINGS
from .config_file import config_path
from .config_sources import explain_config
from .doctor_state import Doctor, Failed, Skipped
from .errors import CloudChainError, credentials_hint


def check_config(doctor: Doctor) -> str:
    path, named = config_path(doctor.path, doctor.environ)
    try:
        doctor.config, doctor.sources, unknown = explain_config(
            doctor.overrides, path=doctor.path, environ=doctor.environ
        )
    except CloudChainError as err:
        raise Failed(str(err), err.hint or "fix the file, or name another with --config") from None
    if not path.exists():
        return f"no config file at {path} (none is needed: defaults and the environment apply)"
    if unknown:
        raise Failed(
            f"parsed, but {'; '.join(unknown)}",
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
    return source if source in ("flag", "default") else f"file {source}"  # with its line


def check_settings(doctor: Doctor) -> str:
    config = doctor.config
    assert config is not None
    doctor.clients = clients = Clients(config, None)
    try:
        region = clients.region  # the AWS chain's, when none is configured: a profile's
    except CloudChainError as err:
        raise Failed(str(err), err.hint or "") from None
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


def check_agent(doctor: Doctor) -> str:
    from .agent.client import AgentClient, AgentUnavailable

    try:
        agent = AgentClient.from_environment(doctor.environ)
        if agent is None:
            raise Skipped("CLOUDCHAIN_AGENT is not set: reads go to AWS directly")
        status = agent.health().get("status")
    except AgentUnavailable as why:
        fix = why.fix or "start cchain-agent, or unset CLOUDCHAIN_AGENT (reads then go to AWS)"
        raise Failed(str(why), fix) from None
    if status != "ok":
        raise Failed(f"the agent at {agent.address} says {status!r}", "look at its log")
    return f"{agent.address} is healthy"
