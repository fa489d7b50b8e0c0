"""Typed-task handlers for the fleetlink agent, e.g.
``fleetlink agent run --handler disk.usage=examples/task_handlers.py:disk_usage``.

A handler takes the task's ``input`` (a dict) and returns something JSON-serialisable, which becomes
the execution's output; an exception fails the execution with its message.
"""

from __future__ import annotations

import shutil
from typing import Any


def disk_usage(task_input: dict[str, Any]) -> dict[str, Any]:
    """Total, used and free bytes of the file system holding ``input["path"]`` (default ``/``)."""
    path = str(task_input.get("path", "/"))
    usage = shutil.disk_usage(path)
    return {"path": path, "total": usage.total, "used": usage.used, "free": usage.free}
