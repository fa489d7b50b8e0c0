"""The heartbeat sequence: a strictly increasing number the agent signs each heartbeat with.

Kept in ``agent.db`` (component ``heartbeat``), so it survives restarts; each value is
``max(last + 1, wall clock in ms)``, so it never goes back when the wall clock steps back, and an
agent whose file was lost starts above anything it sent before while its clock is right. The server
accepts a heartbeat only if its sequence is greater than the last one it saw (see
:mod:`fleetlink.auth.sequence` and docs/security.md).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fleetlink.agent.db import DB_FILE, migrate, open_db

log = logging.getLogger(__name__)

COMPONENT = "heartbeat"
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE heartbeat_sequence (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL CHECK (value >= 0)
    );
    INSERT INTO heartbeat_sequence (id, value) VALUES (1, 0);
    """,
)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class HeartbeatSequence:
    """Hands out the next heartbeat sequence, durably (committed with a full sync before it is used).

    Safe from several threads and processes on the same file (each value is one atomic UPDATE).
    """

    def __init__(self, path: str | os.PathLike[str], *, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.path = Path(path)
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        conn = open_db(self.path)
        try:
            migrate(conn, COMPONENT, MIGRATIONS)
        finally:
            conn.close()
        #: The last value handed out, kept in memory too: a full or read-only disk never stops beats.
        self._last = self.last()
        #: Why the last value could not be saved (None: it was).
        self.unsaved: str | None = None

    @classmethod
    def in_state_dir(
        cls, state_dir: str | os.PathLike[str], *, clock_ms: Callable[[], int] = wall_clock_ms
    ) -> HeartbeatSequence:
        """The sequence of the agent whose state lives in ``state_dir``."""
        return cls(Path(state_dir) / DB_FILE, clock_ms=clock_ms)

    def next(self) -> int:
        """The next value: greater than every value handed out before, from this file.

        When the file cannot be written (a full or read-only disk), the value still grows, from
        memory and the clock, and :attr:`unsaved` says why; the next write that succeeds saves it.
        """
        with self._lock:
            floor = max(self._clock_ms(), self._last + 1)
            try:
                conn = open_db(self.path)
                try:
                    # A value must never be handed out twice, even after a power cut: sync this commit.
                    conn.execute("PRAGMA synchronous = FULL")
                    row = conn.execute(
                        "UPDATE heartbeat_sequence SET value = max(value + 1, ?) WHERE id = 1"
                        " RETURNING value",
                        (floor,),
                    ).fetchone()
                finally:
                    conn.close()
            except (sqlite3.Error, OSError) as error:
                if self.unsaved is None:
                    log.warning(
                        "cannot save the heartbeat sequence in %s (%s); kept in memory", self.path, error
                    )
                self.unsaved = str(error)
                self._last = floor
                return floor
            if self.unsaved is not None:
                log.warning("the heartbeat sequence is saved in %s again", self.path)
            self.unsaved = None
            self._last = int(row[0])
            return self._last

    def last(self) -> int:
        """The last value handed out (0 before the first)."""
        conn = open_db(self.path)
        try:
            return int(conn.execute("SELECT value FROM heartbeat_sequence WHERE id = 1").fetchone()[0])
        finally:
            conn.close()
