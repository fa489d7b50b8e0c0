"""Response bodies of the task routes (apart from schemas.py, so other functions do not load them)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from fleetlink.core.tasks.model import Execution, ExecutionStatus, Task


class ExecutionSummary(BaseModel):
    execution_id: str
    agent_id: str
    status: ExecutionStatus
    attempt: int
    exit_code: int | None
    error: str | None
    output: str | None
    output_truncated: bool
    output_bytes: int | None
    started_at: int | None
    finished_at: int | None
    duration_ms: int | None
    updated_at: int

    @classmethod
    def of(cls, execution: Execution) -> ExecutionSummary:
        return cls.model_validate(execution, from_attributes=True)


class ExecutionDetail(ExecutionSummary):
    """What an agent reads of its own execution."""

    task_id: str
    type: str
    command: str | None
    input: dict[str, Any] | None
    timeout_seconds: int
    lease_expires_at: int | None
    cancel_requested: bool


class Lease(BaseModel):
    """A claimed execution: what to run and until when the lease holds."""

    execution_id: str
    task_id: str
    attempt: int
    type: str
    command: str | None
    input: dict[str, Any] | None
    timeout_seconds: int
    priority: int
    lease_expires_at: int | None


class Claimed(BaseModel):
    executions: list[Lease]
    renewed: list[str]
    cancel: list[str]


class ResultRecorded(BaseModel):
    execution_id: str
    attempt: int
    status: ExecutionStatus = Field(description="What was recorded; queued when the attempt is retried")


class TaskCreated(BaseModel):
    task_id: str
    executions: int
    agent_ids: list[str]


class TaskDetail(Task):
    counts: dict[str, int] = Field(description="Executions per status")
    executions: list[ExecutionSummary]

    @classmethod
    def of(cls, task: Task, executions: list[Execution]) -> TaskDetail:
        counts = Counter(e.status.value for e in executions)
        summaries = [ExecutionSummary.of(e) for e in executions]
        return cls(**task.model_dump(), counts=dict(counts), executions=summaries)


class TaskList(BaseModel):
    items: list[Task]
    cursor: str | None
