"""The reference module API: savecreds/readcreds over one default CloudChain.

The module variables (cloudchain.region_name, ...) are read on every call; the default instance,
and so its clients, is rebuilt only when they or the CLOUDCHAIN_* environment change.

When CLOUDCHAIN_AGENT names an agent, readcreds asks it first (importing nothing of the AWS
stack), unless a module variable points elsewhere than the agent's own configuration; an agent
that cannot be reached costs one warning, and the read goes to AWS.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .chain import CloudChain

# The module variables of the reference API, in the order the reference names them.
MODULE_VARIABLES = ("region_name", "endpoint_url", "tablename", "keyalias")

_lock = threading.Lock()
_default: tuple[tuple[Any, ...], CloudChain] | None = None


def _package() -> Any:
    return sys.modules[__package__ or "cloudchain"]


def default_chain() -> CloudChain:
    """Return the shared CloudChain for the current module variables and environment."""
    from .config import CONFIG_ENV, SETTINGS
    from .config_sources import load_config

    global _default
    package = _package()
    explicit = {name: getattr(package, name) for name in MODULE_VARIABLES}
    environment = tuple(s.from_environment(os.environ) for s in SETTINGS.values())
    cache_key = (tuple(explicit.items()), environment, os.environ.get(CONFIG_ENV))
    with _lock:
        if _default is None or _default[0] != cache_key:
            from .chain import CloudChain

            _default = (cache_key, CloudChain.from_settings(load_config(explicit)))
        return _default[1]


def savecreds(service: str, user: str, secret: str | bytes, *, stage: str = "current") -> None:
    """Save a secret for service/user with the default CloudChain (stage="pending": as the
    pending version, which readers see only once promoted)."""
    default_chain().save(service, user, secret, stage=stage)


def readcreds(service: str, user: str) -> str | bytes:
    """Return the secret of service/user from the agent or the default CloudChain (bytes if
    saved so)."""
    package = _package()
    # keyalias only matters for saving; the others would send the read somewhere else.
    if "CLOUDCHAIN_AGENT" in os.environ and not any(
        getattr(package, name) for name in ("region_name", "endpoint_url", "tablename")
    ):
        from .agent.client import AgentClient, AgentUnavailable

        try:
            agent = AgentClient.from_environment()
            if agent is not None:
                return agent.read(service, user)[0]
        except AgentUnavailable as why:
            import logging

            logging.getLogger(__name__).warning("%s; reading from AWS directly", why)
    return default_chain().read(service, user)


def read_configfile(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Load a config file's settings into the module variables and return what it set."""
    from .config_file import config_path, read_config_file

    file_path, _ = config_path(path, os.environ)
    values = read_config_file(file_path, required=True).values
    package = _package()
    loaded = {name: values[name] for name in MODULE_VARIABLES if name in values}
    for name, value in loaded.items():
        setattr(package, name, value)
    return loaded
