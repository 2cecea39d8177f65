"""The cchain actions, one module per group; cli.py builds the parser from SECTIONS."""

from __future__ import annotations

from . import admin, secrets, service, versions
from .spec import Section

SECTIONS: tuple[Section, ...] = (
    secrets.SECTION,
    versions.SECTION,
    service.SECTION,
    admin.SECTION,
)
