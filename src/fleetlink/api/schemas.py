"""Response bodies (requests are the core commands)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from fleetlink.core.agents import AgentStatus, HeartbeatResult
from fleetlink.core.entities import (
    AgentState,
    Hardware,
    KeyAlg,
    Liveness,
    RegistrationEvent,
    RegistrationEventKind,
)
from fleetlink.core.tasks import Execution, ExecutionStatus, Task


class TokenCreated(BaseModel):
    token: str = Field(description="The registration token; shown once, stored only hashed")
    token_id: str
    expires_at: int
    max_uses: int
    tags: dict[str, str]
    name_prefix: str | None


class Registered(BaseModel):
    agent_id: str
    event: RegistrationEventKind
    similarity_score: int | None = Field(
        description="0-100 against the known hardware; null on first register"
    )
    heartbeat_interval_s: int
    server_time: int


class HeartbeatAck(BaseModel):
    server_time: int
    heartbeat_interval_s: int
    pending_executions: int = Field(description="Queued executions waiting for this agent: claim when > 0")
    tunnels_version: int
    renewed: list[str] = Field(description="Of running_executions, those whose lease was renewed")
    cancel: list[str] = Field(description="Of running_executions, those the agent must stop")

    @classmethod
    def of(cls, result: HeartbeatResult) -> HeartbeatAck:
        return cls.model_validate(result, from_attributes=True)


class AgentSummary(BaseModel):
    agent_id: str
    name: str
    state: AgentState
    liveness: Liveness
    last_seen_at: int | None
    reported_status: str | None
    metrics: dict[str, float]
    tags: dict[str, str]
    capabilities: list[str]
    agent_version: str | None
    fingerprint: str
    key_alg: KeyAlg
    public_key: str
    encryption_public_key: str | None
    hardware: Hardware
    registered_at: int
    updated_at: int
    revoked_at: int | None

    @classmethod
    def of(cls, status: AgentStatus) -> AgentSummary:
        agent, presence = status.view.agent, status.view.presence
        return cls(
            **agent.model_dump(exclude={"version"}),
            liveness=status.liveness,
            last_seen_at=presence.last_seen_at if presence else None,
            reported_status=presence.reported_status if presence else None,
            metrics=presence.metrics if presence else {},
        )


class AgentDetail(AgentSummary):
    registration_history: list[RegistrationEvent] = Field(description="Newest first")


class AgentList(BaseModel):
    items: list[AgentSummary]
    cursor: str | None = Field(description="Pass back to get the next page; null on the last page")


class Health(BaseModel):
    status: str
    version: str
    checks: dict[str, Any] = Field(default_factory=dict)


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
