"""``fleetlink agent run --handler TYPE=SPEC``: typed-task handlers named on the command line.

SPEC is ``module:function`` (an importable module) or ``path/to/file.py:function``. A handler takes
the task's ``input`` (a dict) and returns something JSON-serialisable: the execution's output. An
installed package can instead declare its handlers as entry points in the ``fleetlink.task_handlers``
group (name = task type)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from fleetlink.agent.tasks.handlers import HandlerRegistry, load_handler_reference


def load_handler(spec: str) -> Any:
    """The callable ``module:function`` or ``file.py:function`` names; typer.BadParameter if none."""
    try:
        return load_handler_reference(spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--handler") from None


def add_handlers(registry: HandlerRegistry, specs: list[str]) -> None:
    """Add each ``TYPE=SPEC`` to ``registry``."""
    for item in specs:
        task_type, sep, spec = item.partition("=")
        if not sep or not task_type.strip():
            raise typer.BadParameter(f"{item!r} is not TYPE=module:function", param_hint="--handler")
        try:
            registry.add(task_type.strip(), load_handler(spec.strip()), _absolute(spec.strip()))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--handler") from None


def _absolute(spec: str) -> str:
    """``spec`` with a file path made absolute (a handler's own process may start elsewhere)."""
    where, _, attribute = spec.rpartition(":")
    if where.endswith(".py"):
        return f"{Path(where).expanduser().resolve()}:{attribute}"
    return spec
