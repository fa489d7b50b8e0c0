"""Pure state transitions of tasks and executions: each returns the next version, never writes."""

from __future__ import annotations

from typing import Any

from fleetlink.core.errors import Conflict
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.tasks.model import (
    LEASE_GRACE_S,
    CreateTask,
    Execution,
    ExecutionResult,
    ExecutionStatus,
    Task,
)
from fleetlink.core.tasks.output import inline_text


def new_task(command: CreateTask, agent_ids: list[str], actor: str, now: int) -> tuple[Task, list[Execution]]:
    """A task and one queued execution for each agent."""
    fields = command.model_dump(exclude={"targets"})
    task = Task(
        task_id=new_id(IdPrefix.TASK, now),
        targets=command.targets,
        created_at=now,
        created_by=actor,
        execution_count=len(agent_ids),
        **fields,
    )
    executions = [execution_of(task, new_id(IdPrefix.EXECUTION, now), agent_id) for agent_id in agent_ids]
    return task, executions


def execution_of(task: Task, execution_id: str, agent_id: str) -> Execution:
    """The queued execution of a task on one agent (the same whoever writes it, whenever)."""
    return Execution(
        execution_id=execution_id,
        task_id=task.task_id,
        agent_id=agent_id,
        created_at=task.created_at,
        updated_at=task.created_at,
        deliver_by=task.created_at + task.delivery_timeout_seconds * 1000,
        fanout=task.execution_count,
        **task.model_dump(
            include={
                "type",
                "command",
                "input",
                "priority",
                "timeout_seconds",
                "max_retries",
                "delivery_timeout_seconds",
                "max_concurrency",
                "max_errors",
            }
        ),
    )


def lease(execution: Execution, now: int, lease_s: int) -> Execution:
    deadline = now + (execution.timeout_seconds + LEASE_GRACE_S) * 1000
    return execution.model_copy(
        update={
            "status": ExecutionStatus.LEASED,
            "leased_at": now,
            "lease_expires_at": min(now + lease_s * 1000, deadline),
            "updated_at": now,
            **_NEW_ATTEMPT,
        }
    )


#: A new attempt starts with none of the previous one's outcome (that one is kept as an attempt).
_NEW_ATTEMPT: dict[str, Any] = {
    "started_at": None,
    "finished_at": None,
    "exit_code": None,
    "output": None,
    "output_truncated": False,
    "output_bytes": None,
    "stderr": None,
    "stderr_truncated": False,
    "stderr_bytes": None,
    "output_objects": None,
    "error": None,
    "result_status": None,
}


def renew(execution: Execution, now: int, lease_s: int) -> Execution:
    """Extend the lease (never past the timeout plus grace) and mark it running."""
    leased_at = execution.leased_at or now
    deadline = leased_at + (execution.timeout_seconds + LEASE_GRACE_S) * 1000
    return execution.model_copy(
        update={
            "status": ExecutionStatus.RUNNING,
            "lease_expires_at": max(execution.lease_expires_at or now, min(now + lease_s * 1000, deadline)),
            "started_at": execution.started_at or now,
            # a renewal that changes nothing but the lease end is not an update of the execution
            "updated_at": now if execution.status is not ExecutionStatus.RUNNING else execution.updated_at,
        }
    )


def _end_attempt(execution: Execution, outcome: ExecutionStatus, now: int, **fields: Any) -> Execution:
    """Close the current attempt: cancelled if asked, requeued while retries remain, else final."""
    if execution.cancel_requested:
        outcome = ExecutionStatus.CANCELLED
    retry = (
        outcome in (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT)
        and execution.attempt <= execution.max_retries
    )
    update: dict[str, Any] = {
        "updated_at": now,
        "leased_at": None,
        "lease_expires_at": None,
        "result_status": outcome.value,
        **fields,
    }
    if retry:
        update |= {
            "status": ExecutionStatus.QUEUED,
            "attempt": execution.attempt + 1,
            "deliver_by": now + execution.delivery_timeout_seconds * 1000,
        }
    else:
        update |= {"status": outcome}
    return execution.model_copy(update=update)


def apply_result(execution: Execution, result: ExecutionResult, agent_id: str, now: int) -> Execution | None:
    """The execution after this result; None when it is a resend of the result already recorded."""
    if execution.result_attempt == result.attempt and execution.result_digest == result.digest():
        return None
    if not execution.status.holds_lease or execution.attempt != result.attempt:
        raise Conflict(
            f"attempt {result.attempt} is not running (execution is {execution.status.value}, "
            f"attempt {execution.attempt})",
            code="attempt-not-running",
        )
    output, truncated, total = inline_text(result.output, result.output_bytes)
    stderr, stderr_truncated, stderr_total = inline_text(result.stderr, result.stderr_bytes)
    return _end_attempt(
        execution,
        ExecutionStatus(result.status),
        now,
        exit_code=result.exit_code,
        output=output,
        output_truncated=truncated or result.output_truncated,
        output_bytes=total,
        stderr=stderr,
        stderr_truncated=stderr_truncated or result.stderr_truncated,
        stderr_bytes=stderr_total,
        output_objects=result.output_objects,
        error=result.error,
        started_at=result.started_at,
        finished_at=result.finished_at,
        result_attempt=result.attempt,
        result_digest=result.digest(),
    )


def lease_expired(execution: Execution, now: int) -> Execution:
    return _end_attempt(
        execution,
        ExecutionStatus.TIMED_OUT,
        now,
        error=f"lease expired on attempt {execution.attempt}: the agent stopped renewing it",
        finished_at=now,
    )


def delivery_expired(execution: Execution, now: int) -> Execution:
    return execution.model_copy(
        update={"status": ExecutionStatus.EXPIRED, "updated_at": now, "error": "nobody claimed it in time"}
    )


def cancel(execution: Execution, now: int) -> Execution:
    """Queued: cancelled now. Leased or running: the agent is told to stop."""
    if execution.status is ExecutionStatus.QUEUED:
        return execution.model_copy(
            update={"status": ExecutionStatus.CANCELLED, "updated_at": now, "finished_at": now}
        )
    return execution.model_copy(update={"cancel_requested": True, "updated_at": now})


def not_dispatched(execution: Execution, now: int, reason: str) -> Execution:
    """A queued execution the task no longer wants run (its error budget is spent): cancelled."""
    return execution.model_copy(
        update={"status": ExecutionStatus.CANCELLED, "updated_at": now, "finished_at": now, "error": reason}
    )
