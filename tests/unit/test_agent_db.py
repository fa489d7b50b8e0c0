"""agent.db on a real file: per-component migrations, and a file from before them keeps its executions."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetlink.agent.db import SchemaError, closed_on_error, from_row, migrate, open_db, schema_version
from fleetlink.agent.tasks.store import COMPONENT, MIGRATIONS, AgentStore, RowStatus

#: The tasks schema exactly as agents laid it out before schema_versions (PRAGMA user_version = 1).
LEGACY_STEP = (
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
        PRIMARY KEY (execution_id, attempt)
    )
    """,
    "CREATE INDEX executions_open ON executions (status, finished_at) WHERE status != 'reported'",
    "CREATE INDEX executions_reported ON executions (reported_at) WHERE status = 'reported'",
)

WIDGETS = (
    "CREATE TABLE widgets (id TEXT PRIMARY KEY);",
    "ALTER TABLE widgets ADD COLUMN size INTEGER;\nCREATE INDEX widgets_size ON widgets (size);",
)


def test_each_component_keeps_its_own_version(tmp_path: Path) -> None:
    # Given one file with the tasks component migrated
    conn = open_db(tmp_path / "agent.db")
    migrate(conn, COMPONENT, MIGRATIONS)
    # When another component migrates in two steps
    assert migrate(conn, "widgets", WIDGETS) == 2
    # Then each has its own version, and the second step's column is there
    assert (schema_version(conn, COMPONENT), schema_version(conn, "widgets")) == (len(MIGRATIONS), 2)
    conn.execute("INSERT INTO widgets (id, size) VALUES ('w1', 3)")
    conn.close()


def test_a_later_step_alone_is_applied_on_reopen(tmp_path: Path) -> None:
    # Given a component at version 1
    conn = open_db(tmp_path / "agent.db")
    migrate(conn, "widgets", WIDGETS[:1])
    conn.execute("INSERT INTO widgets (id) VALUES ('w1')")
    # When a newer agent brings step 2
    migrate(conn, "widgets", WIDGETS)
    # Then only step 2 ran: the row is kept and the new column exists
    assert [tuple(row) for row in conn.execute("SELECT id, size FROM widgets")] == [("w1", None)]
    conn.close()


def test_a_failing_step_leaves_the_version_and_tables_as_they_were(tmp_path: Path) -> None:
    # Given a component whose second step is broken
    conn = open_db(tmp_path / "agent.db")
    broken = (WIDGETS[0], "CREATE TABLE gadgets (id TEXT);\nALTER TABLE nowhere ADD COLUMN x INTEGER;")
    # When it migrates / Then it fails and nothing of the attempt remains
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, "widgets", broken)
    assert schema_version(conn, "widgets") == 0
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not {"widgets", "gadgets"} & tables
    conn.close()


def test_a_component_newer_than_this_agent_is_refused(tmp_path: Path) -> None:
    # Given a file where a newer agent took widgets to version 2
    conn = open_db(tmp_path / "agent.db")
    migrate(conn, "widgets", WIDGETS)
    # When this agent, knowing one step, migrates / Then it refuses
    with pytest.raises(SchemaError, match="newer"):
        migrate(conn, "widgets", WIDGETS[:1])
    conn.close()


def test_a_file_versioned_by_user_version_keeps_its_executions(tmp_path: Path) -> None:
    # Given agent.db as agents wrote it before schema_versions, holding a finished execution
    path = tmp_path / "agent.db"
    with sqlite3.connect(path) as legacy:
        for statement in LEGACY_STEP:
            legacy.execute(statement)
        legacy.execute("PRAGMA user_version = 1")
        legacy.execute(
            "INSERT INTO executions (execution_id, attempt, task_id, type, command, timeout_seconds, status,"
            " claimed_at, started_at, finished_at, result_status, exit_code, output)"
            " VALUES ('exe_old', 1, 'tsk_old', 'shell', 'true', 30, 'finished',"
            " 1, 2, 3, 'succeeded', 0, 'ok')"
        )
    legacy.close()
    # When this agent opens it
    with AgentStore(path) as store:
        # Then the tasks component is adopted at version 1 and the execution is still owed to the server
        assert store.schema_version() == len(MIGRATIONS)
        assert [(r.execution_id, r.status) for r in store.unreported()] == [("exe_old", RowStatus.FINISHED)]


@dataclass(frozen=True)
class Widget:
    name: str
    size: int
    shiny: bool
    note: str = "none"


def test_a_row_becomes_a_dataclass_by_column_name_with_the_converted_fields_given(tmp_path: Path) -> None:
    # Given a row with a column per field but ``note``, the boolean as SQLite keeps it, and a column
    # no field has
    conn = open_db(tmp_path / "agent.db")
    row = conn.execute("SELECT 7 AS size, 'cog' AS name, 1 AS shiny, 'x' AS colour").fetchone()
    conn.close()
    # When it is read as a Widget with ``shiny`` converted
    widget = from_row(Widget, row, shiny=bool(row["shiny"]))
    # Then each field has its column's value, the converted one as given, the missing one its default
    assert widget == Widget(name="cog", size=7, shiny=True)
    assert type(widget.shiny) is bool


def test_a_connection_is_closed_when_its_setup_fails_and_kept_when_it_succeeds(tmp_path: Path) -> None:
    # Given two connections to agent.db
    kept, failed = open_db(tmp_path / "agent.db"), open_db(tmp_path / "agent.db")
    # When one's setup succeeds and the other's fails
    with closed_on_error(kept):
        kept.execute("CREATE TABLE widgets (name TEXT)")
    with pytest.raises(sqlite3.OperationalError), closed_on_error(failed):
        failed.execute("SELECT * FROM no_such_table")
    # Then the first is still open and the failed one is closed
    assert kept.execute("SELECT count(*) FROM widgets").fetchone()[0] == 0
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        failed.execute("SELECT 1")
    kept.close()
