"""cloudchain: application secrets encrypted with AWS KMS and stored in DynamoDB.

Reference usage::

    import cloudchain
    cloudchain.keyalias = "alias/key"
    cloudchain.savecreds("billing", "alice", "s3cr3t")
    assert cloudchain.readcreds("billing", "alice") == "s3cr3t"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    AccessDeniedError,
    CloudChainConfigError,
    CloudChainError,
    EndpointError,
    IncompleteImportError,
    IntegrityError,
    RegionNameError,
    SecretNotFoundError,
    ThrottledError,
    ValidationError,
    VersionConflictError,
)

if TYPE_CHECKING:
    from .chain import CloudChain
    from .config import Config
    from .module_api import read_configfile, readcreds, savecreds
    from .results import Deleted, Entry, ImportResult, SetupResult, VersionDiff, VersionInfo

# Imported on first use, so that `readcreds` through the agent, and `cchain --read` through it,
# load none of the AWS machinery (PEP 562).
_LAZY = {
    "CloudChain": "chain",
    "Config": "config",
    "Deleted": "results",
    "Entry": "results",
    "ImportResult": "results",
    "SetupResult": "results",
    "VersionDiff": "results",
    "VersionInfo": "results",
    "read_configfile": "module_api",
    "readcreds": "module_api",
    "savecreds": "module_api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# The reference module variables. None means unset: the environment, then the config file,
# then the default apply. They are read on every call.
region_name: str | None = None
endpoint_url: str | None = None
tablename: str | None = None
keyalias: str | None = None

__all__ = [
    "AccessDeniedError",
    "CloudChain",
    "CloudChainConfigError",
    "CloudChainError",
    "Config",
    "Deleted",
    "EndpointError",
    "Entry",
    "ImportResult",
    "IncompleteImportError",
    "IntegrityError",
    "RegionNameError",
    "SecretNotFoundError",
    "SetupResult",
    "ThrottledError",
    "ValidationError",
    "VersionConflictError",
    "VersionDiff",
    "VersionInfo",
    "__version__",
    "endpoint_url",
    "keyalias",
    "read_configfile",
    "readcreds",
    "region_name",
    "savecreds",
    "tablename",
]
