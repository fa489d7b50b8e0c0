"""agent.db checked before the daemon uses it: a damaged or emptied database is never silently replaced.

SQLite takes an empty or missing file for a new database, so an agent.db truncated to 0 bytes (or
deleted) would start empty without a word: queued records and execution history gone. A marker
beside it (``agent.db.marker``: its size and when it was last checked) says it held data; at start:

- the marker says it held data, and the file is missing or empty → :class:`DamagedDatabase`;
- the file does not open as a database, or ``PRAGMA quick_check`` finds damage → the file (with its
  ``-wal``/``-shm``) is moved aside to ``agent.db.damaged-<time>`` and :class:`DamagedDatabase`
  names it and the fix;
- otherwise the marker is refreshed (best effort: a full disk does not stop the agent).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path

from fleetlink.agent.db import DB_FILE

MARKER_SUFFIX = ".marker"


class DamagedDatabase(Exception):
    """agent.db cannot be trusted; ``fix`` says what the operator can do."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def check_state_db(state_dir: str | os.PathLike[str]) -> None:
    """Raise :class:`DamagedDatabase` if the state dir's agent.db is damaged or was emptied."""
    path = Path(state_dir) / DB_FILE
    marker = path.with_name(path.name + MARKER_SUFFIX)
    held = _marker(marker)
    size = path.stat().st_size if path.exists() else None
    if held and not size:
        state = "is missing" if size is None else "is empty (0 bytes)"
        raise DamagedDatabase(
            f"{path} {state}, but it held {held} bytes of records and execution history",
            fix=f"restore it from a backup; or, to start with an empty database, remove {marker}",
        )
    if not size:
        return
    problem = _integrity_problem(path)
    if problem is not None:
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            part = path.with_name(path.name + suffix)
            if part.exists():
                os.replace(part, aside.with_name(aside.name + suffix))
        raise DamagedDatabase(
            f"{path} is damaged ({problem}); it was kept as {aside}",
            fix=(
                f"restore agent.db from a backup, or recover what it holds with `sqlite3 {aside} .recover`;"
                f" to start with an empty database, remove {marker} and start the agent again"
            ),
        )
    with contextlib.suppress(OSError):  # a full or read-only disk: the marker is refreshed next time
        marker.write_text(json.dumps({"bytes": size, "checked_at": int(time.time() * 1000)}) + "\n")


def _marker(marker: Path) -> int:
    try:
        return int(json.loads(marker.read_text())["bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _integrity_problem(path: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        return str(error)
    return None if rows == ["ok"] else "; ".join(rows[:3])
