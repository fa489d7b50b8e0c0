"""A typed task's handler in a process of its own, under the execution's supervisor.

``python -m fleetlink.agent.tasks.handler_process RUN_DIR`` loads the handler the run dir's
``spec.json`` names, calls it on the task's input, and writes its result as JSON to stdout (the
supervisor keeps it in the run dir's ``stdout``), exit 0. A handler that raises, or whose result is
not JSON, writes why to the run dir's ``error`` (synced) and exits 1. Anything the handler itself
prints goes to stderr, so stdout holds only the result.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from fleetlink.agent.tasks.supervisor import ERROR, SPEC

#: Exit codes: the handler returned JSON; the handler failed (``error`` says why); no usable spec.
SUCCEEDED, FAILED, NO_SPEC = 0, 1, 2


def main(folder: Path) -> int:
    try:
        spec: dict[str, Any] = json.loads((folder / SPEC).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return NO_SPEC
    for entry in reversed(spec.get("path", [])):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    from fleetlink.agent.tasks.handlers import load_handler_reference

    try:
        handler = load_handler_reference(str(spec["handler"]))
        with contextlib.redirect_stdout(sys.stderr):
            result = handler(dict(spec.get("input") or {}))
    except Exception as exc:  # the handler's failure is the execution's result
        return _failed(folder, f"{type(exc).__name__}: {exc}")
    try:
        text = json.dumps(result, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        return _failed(folder, f"the handler's result is not JSON: {exc}")
    sys.stdout.write(text)
    sys.stdout.flush()
    return SUCCEEDED


def _failed(folder: Path, error: str) -> int:
    descriptor = os.open(folder / ERROR, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(error)
        handle.flush()
        os.fsync(handle.fileno())
    return FAILED


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
