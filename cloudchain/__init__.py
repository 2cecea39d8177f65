"""cloudchain: application secrets encrypted with AWS KMS and stored in DynamoDB.

Reference usage::

    import cloudchain
    cloudchain.keyalias = "alias/key"
    cloudchain.savecreds("billing", "alice", "s3cr3t")
    assert cloudchain.readcreds("billing", "alice") == "s3cr3t"
"""

from __future__ import annotations

from ._version import __version__
from .chain import CloudChain
from .config import Config
from .errors import (
    AccessDeniedError,
    CloudChainConfigError,
    CloudChainError,
    EndpointError,
    IncompleteImportError,
    IntegrityError,
    SecretNotFoundError,
    ThrottledError,
    ValidationError,
    VersionConflictError,
)
from .module_api import read_configfile, readcreds, savecreds
from .results import Entry, ImportResult, SetupResult, VersionInfo

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
    "EndpointError",
    "Entry",
    "ImportResult",
    "IncompleteImportError",
    "IntegrityError",
    "SecretNotFoundError",
    "SetupResult",
    "ThrottledError",
    "ValidationError",
    "VersionConflictError",
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
