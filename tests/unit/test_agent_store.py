"""The agent's local SQLite store, on a real file: schema, constraints, and an execution's life."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetlink.agent.tasks.store import (
    MIGRATIONS,
    AgentStore,
    ExecutionResult,
    ResultStatus,
    RowStatus,
    StoreError,
)

T0 = 1_800_000_000_000


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "agent.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[AgentStore]:
    with AgentStore(db_path) as opened:
        yield opened


def claim(
    store: AgentStore,
    execution_id: str = "exe_1",
    attempt: int = 1,
    *,
    type: str = "shell",
    command: str | None = "echo hi",
    input: dict[str, Any] | None = None,
) -> bool:
    return store.record_claimed(
        execution_id=execution_id,
        attempt=attempt,
        task_id="tsk_1",
        type=type,
        command=command,
        input=input,
        timeout_seconds=30,
        claimed_at=T0,
    )


def succeeded(at: int = T0 + 2_000) -> ExecutionResult:
    return ExecutionResult(status=ResultStatus.SUCCEEDED, finished_at=at, exit_code=0, output="hi\n")


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen(["/bin/true"], start_new_session=True)
    process.wait()
    return process.pid


# --- schema and settings -------------------------------------------------------------------------


def test_a_new_file_gets_every_migration_and_wal(store: AgentStore) -> None:
    # Given a store just created on a fresh file
    # Then every schema step is applied, journaling is WAL and foreign keys are on
    assert store.schema_version() == len(MIGRATIONS)
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("foreign_keys") == 1
    assert store.pragma("busy_timeout") > 0


def test_opening_again_changes_nothing_and_keeps_the_data(db_path: Path) -> None:
    # Given a store holding one claimed execution
    with AgentStore(db_path) as first:
        claim(first)
    # When the file is opened again (migrations run again)
    with AgentStore(db_path) as second:
        # Then the schema version is the same and the row is still there
        assert second.schema_version() == len(MIGRATIONS)
        assert second.running_ids() == ["exe_1"]


def test_a_file_from_a_newer_agent_is_refused(db_path: Path) -> None:
    # Given a file whose schema is newer than this agent knows
    AgentStore(db_path).close()
    with sqlite3.connect(db_path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    # When this agent opens it / Then it refuses rather than guessing
    with pytest.raises(StoreError, match="newer"):
        AgentStore(db_path)


def test_the_schema_rejects_an_unknown_status(store: AgentStore, db_path: Path) -> None:
    # Given a claimed execution
    claim(store)
    # When anything writes a status outside the lifecycle / Then SQLite refuses it
    with sqlite3.connect(db_path) as db, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute("UPDATE executions SET status = 'exploded'")


def test_the_schema_rejects_an_unknown_result_status(store: AgentStore, db_path: Path) -> None:
    claim(store)
    with sqlite3.connect(db_path) as db, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute("UPDATE executions SET result_status = 'cancelled'")


def test_the_schema_rejects_a_finished_row_without_a_result(store: AgentStore, db_path: Path) -> None:
    claim(store)
    with sqlite3.connect(db_path) as db, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute("UPDATE executions SET status = 'finished'")


# --- an execution's life -------------------------------------------------------------------------


def test_claim_start_finish_report(store: AgentStore) -> None:
    # Given a claimed attempt
    assert claim(store)
    assert store.running_ids() == ["exe_1"]
    # When its process starts
    store.mark_started("exe_1", 1, pid=4242, pgid=4242, started_at=T0 + 1)
    running = store.get("exe_1", 1)
    assert running is not None
    assert (running.status, running.pid, running.pgid) == (RowStatus.RUNNING, 4242, 4242)
    # And it finishes
    finished = store.record_finished("exe_1", 1, succeeded())
    # Then it waits to be reported, with its result and no longer counted as running
    assert finished.status is RowStatus.FINISHED
    assert finished.result() == ExecutionResult(
        status=ResultStatus.SUCCEEDED, finished_at=T0 + 2_000, started_at=T0 + 1, exit_code=0, output="hi\n"
    )
    assert [r.key for r in store.unreported()] == [("exe_1", 1)]
    assert store.running_ids() == []
    # When the server accepts it
    store.mark_reported("exe_1", 1, server_status="succeeded", at=T0 + 3_000)
    # Then nothing is owed any more
    assert store.unreported() == []
    reported = store.get("exe_1")
    assert reported is not None
    assert (reported.status, reported.server_status) == (RowStatus.REPORTED, "succeeded")


def test_claiming_the_same_attempt_twice_is_noticed(store: AgentStore) -> None:
    assert claim(store)
    assert not claim(store)


def test_a_retry_is_a_new_attempt_of_the_same_execution(store: AgentStore) -> None:
    # Given attempt 1 failed and was reported
    claim(store)
    store.record_finished(
        "exe_1", 1, ExecutionResult(status=ResultStatus.FAILED, finished_at=T0, exit_code=1)
    )
    store.mark_reported("exe_1", 1)
    # When the server hands out attempt 2
    assert claim(store, attempt=2)
    # Then both attempts are kept and the latest is attempt 2
    latest = store.get("exe_1")
    assert latest is not None
    assert (latest.attempt, latest.status) == (2, RowStatus.CLAIMED)
    first = store.get("exe_1", 1)
    assert first is not None
    assert first.status is RowStatus.REPORTED


def test_a_result_for_a_finished_attempt_is_refused(store: AgentStore) -> None:
    claim(store)
    store.record_finished("exe_1", 1, succeeded())
    with pytest.raises(StoreError, match="already finished"):
        store.record_finished("exe_1", 1, succeeded())


def test_starting_an_unknown_execution_is_refused(store: AgentStore) -> None:
    with pytest.raises(StoreError, match="unknown"):
        store.mark_started("exe_nope", 1, pid=1)


def test_reporting_twice_is_harmless(store: AgentStore) -> None:
    claim(store)
    store.record_finished("exe_1", 1, succeeded())
    store.mark_reported("exe_1", 1, at=T0 + 5)
    store.mark_reported("exe_1", 1, at=T0 + 9)
    record = store.get("exe_1", 1)
    assert record is not None
    assert record.reported_at == T0 + 5


def test_input_round_trips_as_json(store: AgentStore) -> None:
    claim(store, type="inventory", command=None, input={"paths": ["/etc"], "deep": True})
    record = store.get("exe_1")
    assert record is not None
    assert record.input == {"paths": ["/etc"], "deep": True}


def test_prune_deletes_only_old_reported_rows(store: AgentStore) -> None:
    # Given an old reported attempt, a recent reported one, and an unreported one
    for execution_id, reported_at in (("exe_old", T0), ("exe_new", T0 + 10_000)):
        claim(store, execution_id)
        store.record_finished(execution_id, 1, succeeded())
        store.mark_reported(execution_id, 1, at=reported_at)
    claim(store, "exe_open")
    # When rows reported before T0 + 1 s are pruned
    assert store.prune(reported_before=T0 + 1_000) == 1
    # Then only the old reported row is gone
    assert store.get("exe_old") is None
    assert store.get("exe_new") is not None
    assert store.get("exe_open") is not None


# --- restart -------------------------------------------------------------------------------------


def test_a_restarted_agent_finds_what_it_still_owes(db_path: Path) -> None:
    # Given an agent that died with one result unreported, one task running (its process now gone)
    # and one claimed but never started
    with AgentStore(db_path) as before:
        claim(before, "exe_done")
        before.record_finished("exe_done", 1, succeeded())
        claim(before, "exe_running")
        gone = dead_pid()
        before.mark_started("exe_running", 1, pid=gone, pgid=gone, started_at=T0)
        claim(before, "exe_claimed")
    # When the agent starts again on the same file
    with AgentStore(db_path) as after:
        # Then it finds the unreported result and both interrupted attempts
        assert [r.execution_id for r in after.unreported()] == ["exe_done"]
        assert sorted(r.execution_id for r in after.interrupted()) == ["exe_claimed", "exe_running"]


def test_a_task_whose_process_still_runs_is_not_interrupted(store: AgentStore) -> None:
    # Given a running attempt whose process group is alive
    process = subprocess.Popen(["/bin/sleep", "30"], start_new_session=True)
    try:
        claim(store)
        store.mark_started("exe_1", 1, pid=process.pid, pgid=process.pid)
        # When the store looks for interrupted attempts / Then this one is not among them
        assert store.interrupted() == []
    finally:
        process.kill()
        process.wait()
