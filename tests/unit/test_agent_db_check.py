"""agent.db damaged or emptied is detected at start, kept aside, and named with the fix; never replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetlink.agent.db_check import DamagedDatabase, check_state_db
from fleetlink.agent.tasks.store import AgentStore


def a_used_state_dir(tmp_path: Path) -> Path:
    """A state dir whose agent.db holds an execution, checked once (the marker is written)."""
    with AgentStore.in_state_dir(tmp_path) as store:
        store.record_claimed(
            execution_id="exe_1",
            attempt=1,
            task_id="tsk_1",
            type="shell",
            command="true",
            input=None,
            timeout_seconds=30,
            claimed_at=1,
        )
    check_state_db(tmp_path)
    return tmp_path


def test_a_healthy_database_passes_and_leaves_a_marker(tmp_path: Path) -> None:
    # Given a used state dir / When it is checked again / Then nothing is raised and the marker is there
    check_state_db(a_used_state_dir(tmp_path))
    assert (tmp_path / "agent.db.marker").exists()


def test_an_emptied_database_is_refused_with_the_fix(tmp_path: Path) -> None:
    # Given a used state dir whose agent.db was truncated to 0 bytes
    state_dir = a_used_state_dir(tmp_path)
    (state_dir / "agent.db").write_bytes(b"")
    for leftover in ("agent.db-wal", "agent.db-shm"):
        (state_dir / leftover).unlink(missing_ok=True)
    # When the agent starts / Then it is refused, saying what it held and what to do
    with pytest.raises(DamagedDatabase, match="is empty") as refused:
        check_state_db(state_dir)
    assert "restore it from a backup" in refused.value.fix
    assert (state_dir / "agent.db").stat().st_size == 0  # never replaced


def test_a_damaged_header_is_kept_aside_and_named(tmp_path: Path) -> None:
    # Given a used state dir whose agent.db header was overwritten
    state_dir = a_used_state_dir(tmp_path)
    for leftover in ("agent.db-wal", "agent.db-shm"):
        (state_dir / leftover).unlink(missing_ok=True)
    database = state_dir / "agent.db"
    data = bytearray(database.read_bytes())
    data[:16] = b"garbage garbage!"
    database.write_bytes(bytes(data))
    # When the agent starts
    with pytest.raises(DamagedDatabase, match="is damaged") as refused:
        check_state_db(state_dir)
    # Then the file is kept aside under the name the error gives, and the fix says how to recover
    (aside,) = state_dir.glob("agent.db.damaged-*")
    assert str(aside) in str(refused.value)
    assert aside.read_bytes() == bytes(data)
    assert ".recover" in refused.value.fix
    assert not database.exists()
