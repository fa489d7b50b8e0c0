"""The tasks component's local state: the ``executions`` table of ``agent.db`` (see agent/db.py).

An execution is written here when it is claimed, before its process starts, and again when it
finishes, before the result is sent; so an agent that dies at any point finds on restart what it
still owes the server. One row per *attempt*: the key is ``(execution_id, attempt)``, because the
server requeues a failed attempt of the same execution with ``attempt + 1`` and each attempt is
reported on its own.

Row status: ``claimed`` (leased, process not started) → ``running`` (pid/pgid known) →
``finished`` (result recorded, not yet accepted by the server) → ``reported``.

CHECK constraints on every status, epoch-millisecond times; the schema is the ``tasks`` component's
in ``schema_versions``. Files written before per-component versions counted the same steps in
``PRAGMA user_version``; they are adopted as they are, keeping their executions.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from fleetlink.agent.db import (
    DEFAULT_BUSY_TIMEOUT_MS,
    LockedConnection,
    SchemaError,
    adopt_version,
    closed_on_error,
    db_path,
    from_row,
    migrate,
    now_ms,
    open_db,
    schema_version,
)
from fleetlink.agent.process import is_our_group

COMPONENT = "tasks"
#: The ``tasks`` component's schema steps (SQL scripts, see agent/db.py). Append; never edit one applied.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE executions (
        execution_id     TEXT    NOT NULL CHECK (length(execution_id) BETWEEN 1 AND 128),
        attempt          INTEGER NOT NULL CHECK (attempt >= 1),
        task_id          TEXT    NOT NULL,
        type             TEXT    NOT NULL CHECK (length(type) BETWEEN 1 AND 64),
        command          TEXT,
        input            TEXT    CHECK (input IS NULL OR json_valid(input)),
        timeout_seconds  INTEGER NOT NULL CHECK (timeout_seconds >= 1),
        status           TEXT    NOT NULL DEFAULT 'claimed'
                         CHECK (status IN ('claimed', 'running', 'finished', 'reported')),
        pid              INTEGER CHECK (pid IS NULL OR pid > 0),
        pgid             INTEGER CHECK (pgid IS NULL OR pgid > 0),
        claimed_at       INTEGER NOT NULL,
        started_at       INTEGER,
        finished_at      INTEGER,
        result_status    TEXT    CHECK (result_status IN ('succeeded', 'failed', 'timed_out')),
        exit_code        INTEGER,
        output           TEXT,
        output_truncated INTEGER NOT NULL DEFAULT 0 CHECK (output_truncated IN (0, 1)),
        output_bytes     INTEGER CHECK (output_bytes IS NULL OR output_bytes >= 0),
        error            TEXT,
        reported_at      INTEGER,
        server_status    TEXT,
        PRIMARY KEY (execution_id, attempt),
        CHECK ((status IN ('finished', 'reported'))
               = (result_status IS NOT NULL AND finished_at IS NOT NULL)),
        CHECK ((status = 'reported') = (reported_at IS NOT NULL)),
        CHECK (status != 'running' OR (pid IS NOT NULL AND started_at IS NOT NULL))
    );
    CREATE INDEX executions_open ON executions (status, finished_at) WHERE status != 'reported';
    CREATE INDEX executions_reported ON executions (reported_at) WHERE status = 'reported';
    """,
    # stderr kept apart from stdout (``output``)
    """
    ALTER TABLE executions ADD COLUMN stderr TEXT;
    ALTER TABLE executions ADD COLUMN stderr_truncated INTEGER NOT NULL DEFAULT 0
        CHECK (stderr_truncated IN (0, 1));
    ALTER TABLE executions ADD COLUMN stderr_bytes INTEGER CHECK (stderr_bytes IS NULL OR stderr_bytes >= 0);
    """,
)
#: How many steps agents counted in ``PRAGMA user_version`` before ``schema_versions``.
LEGACY_USER_VERSION_STEPS = 1


class StoreError(Exception):
    """The local store cannot do what was asked (unknown execution, wrong state, newer schema)."""


class RowStatus(StrEnum):
    CLAIMED = "claimed"
    RUNNING = "running"
    FINISHED = "finished"
    REPORTED = "reported"


class ResultStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class ExecutionResult:
    """How an attempt ended, as the agent reports it (``output`` is what was kept locally)."""

    status: ResultStatus
    finished_at: int
    started_at: int | None = None
    exit_code: int | None = None
    output: str = ""
    output_truncated: bool = False
    output_bytes: int | None = None
    error: str | None = None
    stderr: str = ""
    stderr_truncated: bool = False
    stderr_bytes: int | None = None


@dataclass(frozen=True)
class ExecutionRecord:
    """One attempt of one execution as stored locally."""

    execution_id: str
    attempt: int
    task_id: str
    type: str
    command: str | None
    input: dict[str, Any] | None
    timeout_seconds: int
    status: RowStatus
    pid: int | None
    pgid: int | None
    claimed_at: int
    started_at: int | None
    finished_at: int | None
    result_status: ResultStatus | None
    exit_code: int | None
    output: str | None
    output_truncated: bool
    output_bytes: int | None
    error: str | None
    reported_at: int | None
    server_status: str | None
    stderr: str | None = None
    stderr_truncated: bool = False
    stderr_bytes: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.execution_id, self.attempt

    def result(self) -> ExecutionResult:
        """The recorded result (only for finished or reported rows)."""
        if self.result_status is None or self.finished_at is None:
            raise StoreError(f"{self.execution_id} attempt {self.attempt} has no result yet")
        return ExecutionResult(
            status=self.result_status,
            finished_at=self.finished_at,
            started_at=self.started_at,
            exit_code=self.exit_code,
            output=self.output or "",
            output_truncated=self.output_truncated,
            output_bytes=self.output_bytes,
            error=self.error,
            stderr=self.stderr or "",
            stderr_truncated=self.stderr_truncated,
            stderr_bytes=self.stderr_bytes,
        )

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ExecutionRecord:
        raw_input = row["input"]
        return from_row(
            cls,
            row,
            input=json.loads(raw_input) if raw_input is not None else None,
            status=RowStatus(row["status"]),
            result_status=ResultStatus(row["result_status"]) if row["result_status"] else None,
            output_truncated=bool(row["output_truncated"]),
            stderr_truncated=bool(row["stderr_truncated"]),
        )


def still_running(record: ExecutionRecord) -> bool:
    """Whether the process group recorded for ``record`` is alive and still the one the agent started."""
    return record.pgid is not None and is_our_group(record.pgid, record.started_at)


# --- the store -----------------------------------------------------------------------------------


class AgentStore(LockedConnection):
    """Thread-safe access to ``agent.db``: one connection, one lock, autocommit plus explicit transactions."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], int] = now_ms,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        try:
            self._db = open_db(self.path, busy_timeout_ms=busy_timeout_ms)
        except SchemaError as exc:
            raise StoreError(str(exc)) from exc
        with closed_on_error(self._db):
            self.migrate()

    @classmethod
    def in_state_dir(cls, state_dir: str | os.PathLike[str], **options: Any) -> AgentStore:
        """The store of the agent whose state lives in ``state_dir``."""
        return cls(db_path(state_dir), **options)

    def schema_version(self) -> int:
        """How many of :data:`MIGRATIONS` the file holds."""
        with self._lock:
            return schema_version(self._db, COMPONENT)

    def pragma(self, name: str) -> Any:
        """One PRAGMA's current value (for diagnostics and tests)."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        with self._lock:
            return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    def migrate(self) -> int:
        """Bring the executions table up to date (adopting a file versioned by ``user_version``)."""
        with self._lock:
            legacy = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if legacy > LEGACY_USER_VERSION_STEPS:
                raise StoreError(
                    f"{self.path} has schema version {legacy}, newer than this agent's {len(MIGRATIONS)}"
                )
            try:
                if legacy:
                    with self.transaction() as db:
                        adopt_version(db, COMPONENT, legacy)
                return migrate(self._db, COMPONENT, MIGRATIONS)
            except SchemaError as exc:
                raise StoreError(f"{self.path}: {exc}") from exc

    # --- writes, in the order an execution goes through them ---

    def record_claimed(
        self,
        *,
        execution_id: str,
        attempt: int,
        task_id: str,
        type: str,
        timeout_seconds: int,
        command: str | None = None,
        input: dict[str, Any] | None = None,
        claimed_at: int | None = None,
    ) -> bool:
        """Record a leased attempt before anything runs; False if this attempt is already known."""
        with self._lock:
            cursor = self._db.execute(
                """
                INSERT INTO executions
                    (execution_id, attempt, task_id, type, command, input, timeout_seconds, claimed_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (execution_id, attempt) DO NOTHING
                """,
                (
                    execution_id,
                    attempt,
                    task_id,
                    type,
                    command,
                    None if input is None else json.dumps(input, separators=(",", ":")),
                    timeout_seconds,
                    self._clock() if claimed_at is None else claimed_at,
                ),
            )
            return cursor.rowcount == 1

    def mark_started(
        self,
        execution_id: str,
        attempt: int,
        *,
        pid: int,
        pgid: int | None = None,
        started_at: int | None = None,
    ) -> None:
        """The attempt's process is running as ``pid`` (process group ``pgid``)."""
        self._update(
            execution_id,
            attempt,
            "status = 'running', pid = ?, pgid = ?, started_at = ?",
            (pid, pgid, self._clock() if started_at is None else started_at),
            from_status=(RowStatus.CLAIMED,),
        )

    def record_finished(self, execution_id: str, attempt: int, result: ExecutionResult) -> ExecutionRecord:
        """Record how the attempt ended (before reporting it); returns the updated row."""
        self._update(
            execution_id,
            attempt,
            """
            status = 'finished', result_status = ?, exit_code = ?, output = ?, output_truncated = ?,
            output_bytes = ?, stderr = ?, stderr_truncated = ?, stderr_bytes = ?, error = ?,
            finished_at = ?, started_at = coalesce(started_at, ?)
            """,
            (
                result.status.value,
                result.exit_code,
                result.output,
                int(result.output_truncated),
                result.output_bytes,
                result.stderr,
                int(result.stderr_truncated),
                result.stderr_bytes,
                result.error,
                result.finished_at,
                result.started_at,
            ),
            from_status=(RowStatus.CLAIMED, RowStatus.RUNNING),
        )
        return self._require(execution_id, attempt)

    def mark_reported(
        self, execution_id: str, attempt: int, *, server_status: str | None = None, at: int | None = None
    ) -> None:
        """The server has the result (or will never take it); idempotent."""
        with self._lock:
            record = self._require(execution_id, attempt)
            if record.status is RowStatus.REPORTED:
                return
            self._update(
                execution_id,
                attempt,
                "status = 'reported', reported_at = ?, server_status = ?",
                (self._clock() if at is None else at, server_status),
                from_status=(RowStatus.FINISHED,),
            )

    def _update(
        self,
        execution_id: str,
        attempt: int,
        assignments: str,
        values: tuple[Any, ...],
        *,
        from_status: tuple[RowStatus, ...],
    ) -> None:
        placeholders = ", ".join("?" for _ in from_status)
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE executions SET {assignments} "  # noqa: S608 - fixed fragments, values bound
                f"WHERE execution_id = ? AND attempt = ? AND status IN ({placeholders})",
                (*values, execution_id, attempt, *(s.value for s in from_status)),
            )
            if cursor.rowcount != 1:
                current = self.get(execution_id, attempt)
                state = "unknown" if current is None else f"already {current.status.value}"
                raise StoreError(f"{execution_id} attempt {attempt} is {state}")

    def prune(self, reported_before: int) -> int:
        """Delete rows reported before ``reported_before`` (epoch ms); return how many went."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM executions WHERE status = 'reported' AND reported_at < ?", (reported_before,)
            )
            return cursor.rowcount

    # --- reads ---

    def _select(self, where: str, params: tuple[Any, ...] = ()) -> list[ExecutionRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM executions WHERE {where}",  # noqa: S608 - fixed fragments, values bound
                params,
            ).fetchall()
        return [ExecutionRecord.from_row(row) for row in rows]

    def get(self, execution_id: str, attempt: int | None = None) -> ExecutionRecord | None:
        """One attempt, or the latest attempt of the execution when ``attempt`` is None."""
        if attempt is None:
            found = self._select("execution_id = ? ORDER BY attempt DESC LIMIT 1", (execution_id,))
        else:
            found = self._select("execution_id = ? AND attempt = ?", (execution_id, attempt))
        return found[0] if found else None

    def _require(self, execution_id: str, attempt: int) -> ExecutionRecord:
        record = self.get(execution_id, attempt)
        if record is None:
            raise StoreError(f"{execution_id} attempt {attempt} is unknown")
        return record

    def in_flight(self) -> list[ExecutionRecord]:
        """Attempts claimed or running, oldest claim first."""
        return self._select("status IN ('claimed', 'running') ORDER BY claimed_at, execution_id")

    def running_ids(self) -> list[str]:
        """Execution ids this agent holds a lease for and is working on (claimed or running)."""
        return [record.execution_id for record in self.in_flight()]

    def unreported(self) -> list[ExecutionRecord]:
        """Finished attempts whose result the server has not accepted yet, oldest first."""
        return self._select("status = 'finished' ORDER BY finished_at, execution_id")

    def interrupted(self, alive: Callable[[ExecutionRecord], bool] | None = None) -> list[ExecutionRecord]:
        """Attempts a previous run of the agent left behind: running whose process is gone, or claimed
        and never started. Call it at start-up, before this run claims anything."""
        alive = alive or still_running
        return [
            record for record in self.in_flight() if record.status is RowStatus.CLAIMED or not alive(record)
        ]

    def counts(self) -> dict[str, int]:
        """How many attempts are in each row status."""
        with self._lock:
            rows = self._db.execute("SELECT status, count(*) FROM executions GROUP BY status").fetchall()
        return {str(status): int(n) for status, n in rows}
