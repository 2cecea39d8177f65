"""The cchain actions, one module per group; cli.py builds the parser from SECTIONS."""

from __future__ import annotations

from . import (
    admin,
    doctor,
    due,
    generating,
    migrate,
    render,
    rotation,
    secrets,
    service,
    versions,
    watch,
)
from .spec import Section

SECTIONS: tuple[Section, ...] = (
    secrets.SECTION,
    generating.SECTION,
    versions.SECTION,
    due.SECTION,
    rotation.SECTION,
    service.SECTION,
    watch.SECTION,
    render.SECTION,
    migrate.SECTION,
    admin.SECTION,
    doctor.SECTION,
)
