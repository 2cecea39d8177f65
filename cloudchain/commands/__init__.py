"""The cchain actions, one module per group; cli.py builds the parser from SECTIONS."""

from __future__ import annotations

from . import admin, doctor, render, secrets, service, versions
from .spec import Section

SECTIONS: tuple[Section, ...] = (
    secrets.SECTION,
    versions.SECTION,
    service.SECTION,
    render.SECTION,
    admin.SECTION,
    doctor.SECTION,
)
