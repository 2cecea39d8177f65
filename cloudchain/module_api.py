"""The reference module API: savecreds/readcreds over one default CloudChain.

The module variables (cloudchain.region_name, ...) are read on every call; the default instance,
and so its clients, is rebuilt only when they or the CLOUDCHAIN_* environment change.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from .chain import CloudChain
from .config import CONFIG_ENV, SETTINGS, config_path, load_config, read_config_file

# The module variables of the reference API, in the order the reference names them.
MODULE_VARIABLES = ("region_name", "endpoint_url", "tablename", "keyalias")

_lock = threading.Lock()
_default: tuple[tuple[Any, ...], CloudChain] | None = None


def _package() -> Any:
    return sys.modules[__package__ or "cloudchain"]


def default_chain() -> CloudChain:
    """Return the shared CloudChain for the current module variables and environment."""
    global _default
    package = _package()
    explicit = {name: getattr(package, name) for name in MODULE_VARIABLES}
    environment = tuple(s.from_environment(os.environ) for s in SETTINGS.values())
    cache_key = (tuple(explicit.items()), environment, os.environ.get(CONFIG_ENV))
    with _lock:
        if _default is None or _default[0] != cache_key:
            _default = (cache_key, CloudChain.from_settings(load_config(explicit)))
        return _default[1]


def savecreds(service: str, user: str, secret: str | bytes) -> None:
    """Save a secret for service/user with the default CloudChain."""
    default_chain().save(service, user, secret)


def readcreds(service: str, user: str) -> str | bytes:
    """Return the secret of service/user from the default CloudChain (bytes if saved so)."""
    return default_chain().read(service, user)


def read_configfile(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Load a config file's settings into the module variables and return what it set."""
    file_path, _ = config_path(path, os.environ)
    values = read_config_file(file_path, required=True)
    package = _package()
    loaded = {name: values[name] for name in MODULE_VARIABLES if name in values}
    for name, value in loaded.items():
        setattr(package, name, value)
    return loaded
