"""Execution state transitions: pure functions, no store."""

from __future__ import annotations

from typing import Any

import pytest

from fleetlink.core.errors import Conflict
from fleetlink.core.tasks.model import (
    LEASE_GRACE_S,
    OUTPUT_INLINE_LIMIT,
    Execution,
    ExecutionResult,
    ExecutionStatus,
)
from fleetlink.core.tasks.transitions import apply_result, cancel, lease, lease_expired, renew

NOW = 1_800_000_000_000


def queued(**fields: Any) -> Execution:
    base: dict[str, Any] = {
        "execution_id": "exe_1",
        "task_id": "tsk_1",
        "agent_id": "agt_1",
        "type": "shell",
        "command": "true",
        "priority": 0,
        "timeout_seconds": 30,
        "max_retries": 0,
        "delivery_timeout_seconds": 3600,
        "created_at": NOW,
        "updated_at": NOW,
        "deliver_by": NOW + 3_600_000,
    }
    return Execution(**(base | fields))


def result(status: str = "succeeded", attempt: int = 1, **fields: Any) -> ExecutionResult:
    return ExecutionResult(attempt=attempt, status=status, started_at=NOW, finished_at=NOW + 5, **fields)  # type: ignore[arg-type]


def test_lease_never_outlasts_the_timeout_plus_grace() -> None:
    leased = lease(queued(timeout_seconds=10), NOW, lease_s=120)
    assert leased.status is ExecutionStatus.LEASED
    assert leased.lease_expires_at == NOW + (10 + LEASE_GRACE_S) * 1000


def test_renewal_marks_running_and_stops_at_the_deadline() -> None:
    leased = lease(queued(timeout_seconds=10), NOW, lease_s=60)
    renewed = renew(leased, NOW + 1_000_000, lease_s=60)
    assert renewed.status is ExecutionStatus.RUNNING
    assert renewed.lease_expires_at == NOW + (10 + LEASE_GRACE_S) * 1000


def test_failure_with_retries_left_requeues_the_next_attempt() -> None:
    running = renew(lease(queued(max_retries=1), NOW, 60), NOW, 60)
    after = apply_result(running, result("failed", exit_code=2), "agt_1", NOW)
    assert after is not None
    assert (after.status, after.attempt, after.exit_code) == (ExecutionStatus.QUEUED, 2, 2)


def test_failure_without_retries_is_final() -> None:
    running = lease(queued(), NOW, 60)
    after = apply_result(running, result("failed"), "agt_1", NOW)
    assert after is not None
    assert after.status is ExecutionStatus.FAILED


def test_the_same_result_again_changes_nothing_and_another_conflicts() -> None:
    done = apply_result(lease(queued(), NOW, 60), result(output="a"), "agt_1", NOW)
    assert done is not None
    assert apply_result(done, result(output="a"), "agt_1", NOW) is None
    with pytest.raises(Conflict):
        apply_result(done, result(output="b"), "agt_1", NOW)


def test_result_for_an_old_attempt_conflicts() -> None:
    retried = apply_result(lease(queued(max_retries=1), NOW, 60), result("failed"), "agt_1", NOW)
    assert retried is not None
    with pytest.raises(Conflict):
        apply_result(lease(retried, NOW, 60), result("succeeded", attempt=1, output="x"), "agt_1", NOW)


def test_whatever_a_cancelled_execution_reports_is_recorded_cancelled() -> None:
    asked = cancel(lease(queued(max_retries=3), NOW, 60), NOW)
    assert asked.cancel_requested
    after = apply_result(asked, result("failed"), "agt_1", NOW)
    assert after is not None
    assert after.status is ExecutionStatus.CANCELLED


def test_cancel_of_a_queued_execution_ends_it_at_once() -> None:
    assert cancel(queued(), NOW).status is ExecutionStatus.CANCELLED


def test_expired_lease_times_out_the_attempt() -> None:
    assert lease_expired(lease(queued(), NOW, 60), NOW).status is ExecutionStatus.TIMED_OUT
    assert lease_expired(lease(queued(max_retries=1), NOW, 60), NOW).status is ExecutionStatus.QUEUED


def test_output_beyond_the_inline_limit_is_cut_and_counted() -> None:
    after = apply_result(lease(queued(), NOW, 60), result(output="é" * OUTPUT_INLINE_LIMIT), "agt_1", NOW)
    assert after is not None
    assert after.output is not None
    assert len(after.output.encode()) <= OUTPUT_INLINE_LIMIT
    assert (after.output_truncated, after.output_bytes) == (True, 2 * OUTPUT_INLINE_LIMIT)
