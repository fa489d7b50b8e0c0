"""``fleetlink agent run --handler TYPE=SPEC``: typed-task handlers named on the command line.

SPEC is ``module:function`` (an importable module) or ``path/to/file.py:function``. A handler takes
the task's ``input`` (a dict) and returns something JSON-serialisable: the execution's output. An
installed package can instead declare its handlers as entry points in the ``fleetlink.task_handlers``
group (name = task type)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import typer

from fleetlink.agent.tasks.handlers import HandlerRegistry


def load_handler(spec: str) -> Any:
    """The callable ``module:function`` or ``file.py:function`` names; typer.BadParameter if none."""
    where, sep, attribute = spec.rpartition(":")
    if not sep or not where or not attribute:
        raise typer.BadParameter(
            f"{spec!r} is not module:function or file.py:function", param_hint="--handler"
        )
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser().resolve()
            module_spec = importlib.util.spec_from_file_location(f"fleetlink_handlers_{path.stem}", path)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except (ImportError, OSError, SyntaxError) as exc:
        raise typer.BadParameter(f"{spec!r}: {exc}", param_hint="--handler") from None
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise typer.BadParameter(f"{spec!r}: {where} has no function {attribute}", param_hint="--handler")
    return handler


def add_handlers(registry: HandlerRegistry, specs: list[str]) -> None:
    """Add each ``TYPE=SPEC`` to ``registry``."""
    for item in specs:
        task_type, sep, spec = item.partition("=")
        if not sep or not task_type.strip():
            raise typer.BadParameter(f"{item!r} is not TYPE=module:function", param_hint="--handler")
        try:
            registry.add(task_type.strip(), load_handler(spec.strip()))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--handler") from None
