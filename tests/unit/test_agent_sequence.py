"""The agent's heartbeat sequence in agent.db: strictly increasing across restarts and clock steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fleetlink.agent.db import open_db, schema_version
from fleetlink.agent.sequence import COMPONENT, HeartbeatSequence

T0 = 1_800_000_000_000


class Clock:
    """A wall clock tests set by hand."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def test_values_strictly_increase_while_the_clock_stands_still(tmp_path: Path) -> None:
    # Given a sequence whose clock does not move
    sequence = HeartbeatSequence.in_state_dir(tmp_path, clock_ms=Clock(T0))
    # When three values are taken / Then they start at the clock and go up by one
    assert [sequence.next() for _ in range(3)] == [T0, T0 + 1, T0 + 2]


def test_a_wall_clock_step_backwards_never_lowers_the_sequence(tmp_path: Path) -> None:
    # Given a value taken at T0
    clock = Clock(T0)
    sequence = HeartbeatSequence.in_state_dir(tmp_path, clock_ms=clock)
    first = sequence.next()
    # When the wall clock steps back an hour (NTP correction, RTC reset)
    clock.now_ms = T0 - 3_600_000
    # Then the next values still go up
    assert sequence.next() == first + 1
    assert sequence.next() == first + 2


def test_the_sequence_survives_a_restart_in_another_process(tmp_path: Path) -> None:
    # Given an agent process that took values and exited
    code = (
        "import sys; from fleetlink.agent.sequence import HeartbeatSequence\n"
        "s = HeartbeatSequence.in_state_dir(sys.argv[1], clock_ms=lambda: 5_000_000_000_000)\n"
        "print(max(s.next() for _ in range(5)))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True, env=env
    )
    sent = int(done.stdout)
    # When the agent starts again with its clock far behind what it used then
    sequence = HeartbeatSequence.in_state_dir(tmp_path, clock_ms=Clock(T0))
    # Then it carries on above every value it handed out
    assert sequence.last() == sent
    assert sequence.next() == sent + 1


def test_the_sequence_lives_in_agent_db_with_its_own_schema_version(tmp_path: Path) -> None:
    # When a sequence is created in a state dir
    HeartbeatSequence.in_state_dir(tmp_path, clock_ms=Clock(T0)).next()
    # Then agent.db carries its table under the component's own version
    conn = open_db(tmp_path / "agent.db")
    try:
        assert schema_version(conn, COMPONENT) == 1
        assert conn.execute("SELECT value FROM heartbeat_sequence").fetchone()[0] == T0
    finally:
        conn.close()


def test_two_users_of_one_file_never_get_the_same_value(tmp_path: Path) -> None:
    # Given two sequences on the same file (the daemon and a one-off `fleetlink agent heartbeat`)
    clock = Clock(T0)
    one = HeartbeatSequence.in_state_dir(tmp_path, clock_ms=clock)
    two = HeartbeatSequence.in_state_dir(tmp_path, clock_ms=clock)
    # When they take values in turn / Then every value is new
    values = [seq.next() for _ in range(5) for seq in (one, two)]
    assert len(set(values)) == len(values) == 10
    assert values == sorted(values)
