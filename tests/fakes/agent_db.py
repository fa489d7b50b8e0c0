"""Stand-in for ``fleetlink.agent.db`` (open_db / migrate) until that module is on this branch.

:func:`install` registers it under the real name only when the real module cannot be imported, so
the relay code runs unchanged against either.
"""

from __future__ import annotations

import importlib
import sqlite3
import sys
import types
from collections.abc import Sequence
from pathlib import Path

BUSY_TIMEOUT_MS = 5_000


def open_db(path: str | Path) -> sqlite3.Connection:
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[str]) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
    version = row[0] if row else 0
    for number, script in enumerate(migrations[version:], start=version + 1):
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{script};\n"
            f"INSERT INTO schema_versions VALUES ('{component}', {number}) "
            f"ON CONFLICT (component) DO UPDATE SET version = {number};\nCOMMIT;"
        )
    return len(migrations)


def install() -> None:
    """Make ``import fleetlink.agent.db`` work (this stand-in only when the real module is absent)."""
    try:
        importlib.import_module("fleetlink.agent.db")
    except ModuleNotFoundError as exc:
        if exc.name != "fleetlink.agent.db":
            raise
        module = types.ModuleType("fleetlink.agent.db", __doc__)
        module.open_db = open_db  # type: ignore[attr-defined]
        module.migrate = migrate  # type: ignore[attr-defined]
        sys.modules["fleetlink.agent.db"] = module
