"""Task handlers: the registry of task types (shell built in, others from entry points)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)


SHELL = "shell"


Handler = Callable[[dict[str, Any]], Any]
#: Entry-point group through which installed packages add task handlers (entry point name = task type).
HANDLER_ENTRY_POINTS = "fleetlink.task_handlers"


# --- handlers ------------------------------------------------------------------------------------


class HandlerRegistry:
    """Handlers for task types other than ``shell`` (built in).

    A handler takes the task's ``input`` dict and returns something JSON-serialisable, which becomes
    the execution's output (as JSON text); an exception makes the execution ``failed`` with the error.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, task_type: str) -> Callable[[Handler], Handler]:
        """Decorator: ``@registry.register("inventory")`` makes the function the handler of that type."""

        def decorate(handler: Handler) -> Handler:
            self.add(task_type, handler)
            return handler

        return decorate

    def add(self, task_type: str, handler: Handler) -> None:
        if task_type == SHELL:
            raise ValueError("the shell task type is built in")
        if task_type in self._handlers:
            raise ValueError(f"task type {task_type!r} already has a handler")
        self._handlers[task_type] = handler

    def load_entry_points(self, group: str = HANDLER_ENTRY_POINTS) -> list[str]:
        """Add the handlers installed packages declare as entry points (name = task type); returns the
        types added. One that fails to load is logged and skipped."""
        added = []
        for entry_point in entry_points(group=group):
            try:
                handler = entry_point.load()
                if not callable(handler):
                    raise TypeError(f"{entry_point.value} is not callable")
                self.add(entry_point.name, handler)
            except Exception:
                log.exception("cannot load the task handler %s (%s)", entry_point.name, entry_point.value)
                continue
            added.append(entry_point.name)
        return added

    def get(self, task_type: str) -> Handler | None:
        return self._handlers.get(task_type)

    def __contains__(self, task_type: object) -> bool:
        return task_type == SHELL or task_type in self._handlers

    def types(self) -> list[str]:
        """Every task type this agent runs."""
        return sorted([SHELL, *self._handlers])
