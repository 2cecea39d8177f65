"""The writer libraries some export formats need, which the `formats` extra installs: looked
up before any secret is read, so that a missing one costs no AWS call and writes nothing."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import CloudChainError

# format -> the modules it is written with, and the distribution each comes from.
_NEEDS = {
    "yaml": (("yaml", "PyYAML"),),
    "k8s": (("yaml", "PyYAML"),),
    "properties": (("javaproperties", "javaproperties"),),
}
INSTALL_HINT = "pip install 'cloudchain[formats]'"


def writer(module: str, fmt: str) -> ModuleType:
    """Import the library fmt is written with, or refuse in one line naming how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = dict(_NEEDS.get(fmt, ())).get(module, module)
        raise CloudChainError(
            f"--format {fmt} needs {package}, which is not installed", hint=INSTALL_HINT
        ) from None


def check_writers(fmt: str) -> None:
    """Refuse, before anything is read, a format whose writer library is missing."""
    for module, _ in _NEEDS.get(fmt, ()):
        writer(module, fmt)
