"""Powertools packages whose ``__init__`` runs only when one of its own names is used.

``aws_lambda_powertools/__init__`` loads Metrics and Tracer, ``event_handler/__init__`` every
resolver (AppSync with asyncio, Bedrock, VPC Lattice...), ``utilities/data_classes/__init__`` every
event class: a handler needs a few submodules of each, and a package's ``__init__`` runs before any
of them. ``install`` registers these packages as shells that import submodules as usual and resolve
the names their ``__init__`` re-exports from the one submodule defining each (read from its
``from ... import`` lines); any other name runs the real ``__init__`` first. Left out: the
User-Agent tag the top ``__init__`` adds to botocore requests (it imports botocore to do so).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

#: Outermost first: a shell's parent must be a module before the shell is made.
PACKAGES = (
    "aws_lambda_powertools",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.utilities",
    "aws_lambda_powertools.utilities.data_classes",
)


#: ``from X import a, b as c`` or ``from .x import (a, b)``: ``ast`` would cost more than it saves.
_FROM_IMPORT = re.compile(r"^from\s+(\.*)([\w.]*)\s+import\s+(\([^)]*\)|[^\n]*)", re.MULTILINE)


def _reexports(init: Path, package: str) -> dict[str, tuple[str, str]]:
    """``{name: (module, attribute)}`` for each ``from X import attribute as name`` of ``init``."""
    found: dict[str, tuple[str, str]] = {}
    for dots, module, names in _FROM_IMPORT.findall(init.read_text(encoding="utf-8")):
        if not module or module == "__future__":
            continue  # ``from . import x`` names a submodule, found as one
        if dots:
            parts = package.split(".")
            module = ".".join([*parts[: len(parts) - len(dots) + 1], module])
        for entry in names.strip("()").replace("\n", " ").split(","):
            words = entry.split("#")[0].split()
            if words:
                found[words[-1]] = (module, words[0])
    return found


class _Shell(ModuleType):
    """A package whose ``__init__`` is deferred until a name only it defines is used."""

    _fleetlink_reexports: dict[str, tuple[str, str]]
    _fleetlink_initialised: bool

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_fleetlink_"):
            raise AttributeError(name)
        source = self._fleetlink_reexports.get(name)
        if source is not None:
            value = getattr(importlib.import_module(source[0]), source[1])
        elif importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
            value = importlib.import_module(f"{self.__name__}.{name}")
        elif not self._fleetlink_initialised:
            self._fleetlink_initialised = True
            spec = self.__spec__
            assert spec is not None
            assert spec.loader is not None
            spec.loader.exec_module(self)
            return getattr(self, name)
        else:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        setattr(self, name, value)
        return value


def _shell(name: str) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _Shell
    assert isinstance(module, _Shell)
    module._fleetlink_reexports = _reexports(Path(spec.origin), name)
    module._fleetlink_initialised = False
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def install() -> None:
    """Register the shells, unless Powertools is imported already (then it stays as it is)."""
    if PACKAGES[0] in sys.modules:
        return
    for name in PACKAGES:
        _shell(name)
    # What the top package's __init__ does besides importing: its own logger stays silent.
    from aws_lambda_powertools.package_logger import set_package_logger_handler

    set_package_logger_handler()
