"""A full state dir on a small tmpfs: the heartbeat sequence keeps growing (in memory), says why it
is not saved, and is saved again by itself once space returns."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetlink.agent.disk import StateDirHealth
from fleetlink.agent.sequence import HeartbeatSequence
from tests.small_disk import fill, small_tmpfs

T0 = 1_800_000_000_000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (skipped where mounting is not allowed: not root, or no CAP_SYS_ADMIN)."""
    with small_tmpfs(tmp_path) as mount_point:
        yield mount_point


def test_a_full_state_dir_never_stops_the_heartbeat_sequence_and_recovers_by_itself(small_disk: Path) -> None:
    # Given an agent's sequence on a small disk, some values taken, then the disk filled
    clock = iter(range(T0, T0 + 10_000))
    sequence = HeartbeatSequence.in_state_dir(
        small_disk / "state", clock_ms=lambda: next(clock) // 1000 * 1000
    )
    before = [sequence.next() for _ in range(3)]
    filler = fill(small_disk)
    # When values are taken while the disk is full
    during = [sequence.next() for _ in range(20)]
    # Then they keep growing, and the sequence says it cannot save them
    assert before + during == sorted(set(before + during))
    assert sequence.unsaved is not None
    # When space returns, the next value is saved again, above every value handed out
    os.unlink(filler)
    after = sequence.next()
    assert after > during[-1]
    assert sequence.unsaved is None
    assert HeartbeatSequence.in_state_dir(small_disk / "state").last() == after


def test_a_full_state_dir_is_reported_in_the_heartbeat_metrics_until_space_returns(small_disk: Path) -> None:
    # Given the state dir's health probe on a small disk that fills up
    health = StateDirHealth(small_disk)
    assert health.metrics() == {"state_dir_writable": 1.0}
    filler = fill(small_disk)
    # When the heartbeat collects its metrics / Then the state dir is reported unwritable, with why
    assert health.metrics() == {"state_dir_writable": 0.0}
    assert health.problem == "No space left on device"
    # And once space returns it is reported writable again, by itself
    os.unlink(filler)
    assert health.metrics() == {"state_dir_writable": 1.0}
    assert health.problem is None


def test_records_put_on_a_full_state_dir_fails_with_one_clear_line_then_works_again(small_disk: Path) -> None:
    # Given a node's records in a state dir on a small disk, then the disk filled
    state_dir = small_disk / "node"
    put = [
        sys.executable,
        "-m",
        "fleetlink.cli",
        "records",
        "put",
        "inv",
        "disk",
        "--state-dir",
        str(state_dir),
    ]
    assert subprocess.run([*put, "1"], capture_output=True, check=False).returncode == 0
    filler = fill(small_disk)
    # When a value is written locally
    value = '"' + "x" * 60_000 + '"'
    full = subprocess.run([*put, "-"], input=value, capture_output=True, text=True, check=False)
    # Then it fails with one line that names the state dir and the fix, no traceback
    assert full.returncode == 1
    assert "Traceback" not in full.stderr
    said = "".join(full.stderr.split())  # the console wraps long lines, even inside a path
    assert said.startswith("".join(f"Error: cannot write to the state dir {state_dir}".split())), said
    assert "freespacethere" in said
    # And once space returns, the same write succeeds
    os.unlink(filler)
    assert subprocess.run([*put, "2"], capture_output=True, check=False).returncode == 0
