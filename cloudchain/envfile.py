"""The names the agent imports from here; the formats themselves live in cloudchain.formats."""

from __future__ import annotations

from .formats import (
    LOADER_PREFIXES,
    LOADER_VARIABLES,
    MAX_ENV_STRING,
    check_loader_variables,
    check_prefix,
    env_name,
    env_names,
    parse_dotenv,
    parse_import,
    render,
)

__all__ = [
    "LOADER_PREFIXES",
    "LOADER_VARIABLES",
    "MAX_ENV_STRING",
    "check_loader_variables",
    "check_prefix",
    "env_name",
    "env_names",
    "parse_dotenv",
    "parse_import",
    "render",
]
