"""Wire models of the task and execution routes, shared by the handlers and the agent client.

Apart from agents.py, so functions without task routes do not load them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import Field

from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.tasks.model import (
    Execution,
    ExecutionResult,
    ExecutionStatus,
    Task,
    TaskProgress,
    TaskState,
)


class ExecutionSummary(DeferredModel):
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

    @property
    def terminal(self) -> bool:
        """Whether this execution has ended (nothing more will happen to it)."""
        return self.status.terminal


class ExecutionDetail(ExecutionSummary):
    """What an agent reads of its own execution."""

    task_id: str
    type: str
    command: str | None
    input: dict[str, Any] | None
    timeout_seconds: int
    lease_expires_at: int | None
    cancel_requested: bool


class Lease(DeferredModel):
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


class Claimed(DeferredModel):
    executions: list[Lease]
    renewed: list[str]
    cancel: list[str]


class ResultReport(ExecutionResult):
    """How an attempt ended, as the agent reports it (``POST /v1/executions/{id}/result``): the one
    model the agent's tasks service builds, its client sends whole and the route validates."""

    def body(self) -> dict[str, Any]:
        """The JSON body: what differs from the defaults (a resend is byte-identical)."""
        return self.model_dump(mode="json", exclude_defaults=True)


class ResultRecorded(DeferredModel):
    execution_id: str
    attempt: int
    status: ExecutionStatus = Field(description="What was recorded; queued when the attempt is retried")


class TaskCreated(DeferredModel):
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

    @property
    def done(self) -> bool:
        """Whether every execution has ended (a cancelled task may still be stopping running ones)."""
        if self.finished_at is not None:
            return True
        return self.state is not TaskState.ACTIVE and all(e.terminal for e in self.executions)


class TaskSummary(Task):
    """A task as listed: its fields and how far it got (no execution is read)."""

    open_executions: int = Field(default=0, description="Executions not finished yet")
    finished_executions: dict[str, int] = Field(
        default_factory=dict,
        description="Finished executions per final status: succeeded, failed, timed_out, cancelled, expired",
    )

    @classmethod
    def of(cls, task: Task, progress: TaskProgress | None) -> TaskSummary:
        found = progress or TaskProgress()
        return cls(**task.model_dump(), open_executions=found.open, finished_executions=found.finished)


class TaskList(DeferredModel):
    items: list[TaskSummary]
    cursor: str | None
