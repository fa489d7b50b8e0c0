"""The agent's one SQLite file (``agent.db`` in the state dir), shared by its components.

:func:`open_db` opens it with the agent's settings (WAL, ``foreign_keys=ON``, ``busy_timeout``).
Each component (tasks, tunnels, relay) owns its tables and brings them up to date with
:func:`migrate`: its ``MIGRATIONS`` are SQL scripts applied in order, and the number applied is kept
per component in ``schema_versions``, so components evolve without numbering each other's steps.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fleetlink.core.closing import Closing

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DB_FILE = "agent.db"
DEFAULT_BUSY_TIMEOUT_MS = 5_000

Model = TypeVar("Model", bound="DataclassInstance")

_SCHEMA_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_versions (
    component TEXT    PRIMARY KEY CHECK (length(component) BETWEEN 1 AND 64),
    version   INTEGER NOT NULL CHECK (version >= 0)
)
"""


def now_ms() -> int:
    """The local wall clock in epoch milliseconds (what every store stamps its rows with)."""
    return time.time_ns() // 1_000_000


def db_path(state_dir: str | os.PathLike[str]) -> Path:
    """The agent's database file in ``state_dir``."""
    return Path(state_dir) / DB_FILE


class SchemaError(Exception):
    """The file cannot be brought to this agent's schema (e.g. a newer agent wrote it)."""


def open_db(
    path: str | os.PathLike[str], *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """Open (creating it and its directory, mode 0700) the database at ``path`` with the agent's settings.

    Autocommit (``isolation_level=None``): callers open transactions explicitly. The connection may
    be used from several threads, one at a time (callers hold a lock).
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
    )
    conn.row_factory = sqlite3.Row
    with closed_on_error(conn):
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SchemaError(f"{path}: SQLite refused WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


@contextmanager
def closed_on_error(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Close ``conn`` when the block fails (a store that cannot set up its file leaves nothing open)."""
    try:
        yield conn
    except BaseException:
        conn.close()
        raise


def statements(script: str) -> Iterator[str]:
    """The complete SQL statements of ``script``, one at a time (triggers stay whole)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        raise SchemaError(f"an incomplete SQL statement in a migration: {pending.strip()[:80]!r}")


def schema_version(conn: sqlite3.Connection, component: str) -> int:
    """How many of ``component``'s migrations the file holds (0 when none)."""
    conn.execute(_SCHEMA_VERSIONS)
    row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
    return int(row[0]) if row else 0


def adopt_version(conn: sqlite3.Connection, component: str, version: int) -> None:
    """Record ``component`` at ``version`` unless it already has a version (for files whose tables
    predate ``schema_versions``)."""
    conn.execute(_SCHEMA_VERSIONS)
    conn.execute(
        "INSERT INTO schema_versions (component, version) VALUES (?, ?) ON CONFLICT (component) DO NOTHING",
        (component, version),
    )


def migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[str]) -> int:
    """Apply ``component``'s migrations not yet applied, in one transaction; return its version.

    Raises SchemaError when the file holds more of them than this agent knows (a newer agent wrote it).
    Never edit an applied migration: append a new one.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn, component)
        if current > len(migrations):
            raise SchemaError(
                f"the {component} schema in this file is at version {current}, "
                f"newer than this agent's {len(migrations)}"
            )
        for script in migrations[current:]:
            for statement in statements(script):
                conn.execute(statement)
        if current < len(migrations):
            conn.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, len(migrations)),
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return len(migrations)


def from_row(model: type[Model], row: sqlite3.Row, **converted: Any) -> Model:
    """``model`` (a dataclass) with each field the row has a column of that name for; ``converted``
    gives the fields whose column needs converting (JSON, enums, booleans) or that have none."""
    columns = set(row.keys()) - converted.keys()
    as_stored = {field.name: row[field.name] for field in fields(model) if field.name in columns}
    return model(**as_stored, **converted)


class LockedConnection(Closing):
    """A component's ``agent.db`` connection, used from several threads under one lock; closed once
    (also as a context manager). Subclasses set ``_db`` and ``_lock`` in ``__init__``."""

    _db: sqlite3.Connection
    _lock: threading.RLock

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``) under the lock: committed, or rolled back on error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
