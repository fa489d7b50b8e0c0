"""Task handlers: the registry of task types (shell built in, others from entry points).

A handler the registry knows by reference (``module:function`` or ``file.py:function``: an entry
point's, a ``--handler``'s, or a plain module-level function's) can run in a process of its own under
the execution's supervisor, so its outcome outlives the daemon; :func:`in_process` marks one that
must run inside the daemon (the agent's own upgrade).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
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
        self._references: dict[str, str] = {}

    def register(self, task_type: str) -> Callable[[Handler], Handler]:
        """Decorator: ``@registry.register("inventory")`` makes the function the handler of that type."""

        def decorate(handler: Handler) -> Handler:
            self.add(task_type, handler)
            return handler

        return decorate

    def add(self, task_type: str, handler: Handler, reference: str | None = None) -> None:
        """Add ``handler`` for ``task_type``; ``reference``: how another process loads it (by default,
        its module and name, when it is a module-level function of an importable module)."""
        if task_type == SHELL:
            raise ValueError("the shell task type is built in")
        if task_type in self._handlers:
            raise ValueError(f"task type {task_type!r} already has a handler")
        self._handlers[task_type] = handler
        reference = reference or _reference_of(handler)
        if reference is not None and not getattr(handler, IN_PROCESS_ATTRIBUTE, False):
            self._references[task_type] = reference

    def reference(self, task_type: str) -> str | None:
        """How a process of its own loads this type's handler (None: it runs in the daemon)."""
        return self._references.get(task_type)

    def load_entry_points(self, group: str = HANDLER_ENTRY_POINTS) -> list[str]:
        """Add the handlers installed packages declare as entry points (name = task type); returns the
        types added. One that fails to load is logged and skipped."""
        added = []
        for entry_point in entry_points(group=group):
            try:
                handler = entry_point.load()
                if not callable(handler):
                    raise TypeError(f"{entry_point.value} is not callable")
                self.add(entry_point.name, handler, entry_point.value)
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


#: Set on a handler that must run inside the daemon (see :func:`in_process`).
IN_PROCESS_ATTRIBUTE = "__fleetlink_in_process__"


def in_process(handler: Handler) -> Handler:
    """Mark a handler that must run inside the daemon, not in a process of its own."""
    setattr(handler, IN_PROCESS_ATTRIBUTE, True)
    return handler


def _reference_of(handler: Handler) -> str | None:
    module, name = getattr(handler, "__module__", None), getattr(handler, "__qualname__", "")
    if not module or module == "__main__" or not name or "<" in name or "." in name:
        return None
    return f"{module}:{name}"


def load_handler_reference(reference: str) -> Handler:
    """The callable ``module:function`` or ``path/to/file.py:function`` names.

    Raises ValueError (with why) when the reference is malformed, cannot be loaded, or names nothing
    callable."""
    where, sep, attribute = reference.rpartition(":")
    if not sep or not where or not attribute:
        raise ValueError(f"{reference!r} is not module:function or file.py:function")
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
        raise ValueError(f"{reference!r}: {exc}") from None
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise ValueError(f"{reference!r}: {where} has no function {attribute}")
    return handler  # type: ignore[no-any-return]
