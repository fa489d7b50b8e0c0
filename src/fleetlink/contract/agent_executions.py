"""Wire models of an agent's executions (the console's agent page; ``GET /v1/agents/{id}/executions``)."""

from __future__ import annotations

from pydantic import Field

from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.tasks.model import Execution, ExecutionStatus

#: A command longer than this is cut in a list (the task itself has it whole).
COMMAND_SHOWN = 256


class AgentExecution(DeferredModel):
    """One of an agent's executions, without its output (the task's page has it)."""

    execution_id: str
    task_id: str
    type: str
    command: str | None = Field(description=f"The shell command, cut to {COMMAND_SHOWN} characters")
    status: ExecutionStatus
    attempt: int
    exit_code: int | None
    error: str | None
    created_at: int
    started_at: int | None
    finished_at: int | None
    updated_at: int

    @classmethod
    def of(cls, execution: Execution) -> AgentExecution:
        shown = execution.model_copy(
            update={"command": (execution.command or None) and execution.command[:COMMAND_SHOWN]}
        )
        return cls.model_validate(shown, from_attributes=True)


class AgentExecutionList(DeferredModel):
    items: list[AgentExecution] = Field(description="Newest first")
    cursor: str | None = Field(description="Where the older ones go on; null: no more")
