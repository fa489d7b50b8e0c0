"""Ports: what the use cases need from storage. Adapters live in fleetlink.store."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from fleetlink.core.entities import (
    Agent,
    AgentState,
    AuditRecord,
    Page,
    Presence,
    RegistrationEvent,
    RegistrationToken,
)

if TYPE_CHECKING:  # only the tasks function loads the task models
    from fleetlink.core.tasks import CreateRecord, Execution, Task, TaskState


class DueTimer(StrEnum):
    LEASE = "lease"  # leased or running: the lease ends
    DELIVERY = "delivery"  # queued: the delivery deadline passes
    FANOUT = "fanout"  # a task whose executions are still being written


@dataclass(frozen=True)
class AgentView:
    """An agent's profile with its presence (None before the first heartbeat)."""

    agent: Agent
    presence: Presence | None


@dataclass(frozen=True)
class TokenUse:
    """Consume one use of a registration token inside a registration write."""

    token_id: str
    now_ms: int


class AgentRepository(Protocol):
    def get_view(self, agent_id: str) -> AgentView | None: ...

    def list_views(
        self, *, state: AgentState | None, tag: tuple[str, str] | None, limit: int, cursor: str | None
    ) -> Page[AgentView]: ...

    def registration_history(self, agent_id: str, limit: int) -> list[RegistrationEvent]: ...

    def record_heartbeat(
        self, agent_id: str, *, now_ms: int, reported_status: str | None, metrics: dict[str, float]
    ) -> None: ...

    def revoke(self, agent: Agent, *, now_ms: int, audit: AuditRecord) -> Agent: ...

    def replace_tags(
        self, agent: Agent, tags: dict[str, str], *, now_ms: int, audit: AuditRecord
    ) -> Agent: ...


class RegistrationStore(Protocol):
    def create_token(self, token: RegistrationToken, audit: AuditRecord) -> None: ...

    def get_token(self, token_id: str) -> RegistrationToken | None: ...

    def agent_id_for_fingerprint(self, fingerprint: str) -> str | None: ...

    def register_new(self, agent: Agent, event: RegistrationEvent, token_use: TokenUse) -> None: ...

    def re_register(self, agent: Agent, event: RegistrationEvent, token_use: TokenUse | None) -> None: ...

    def record_failed_registration(self, event: RegistrationEvent) -> None: ...


class NonceStore(Protocol):
    def remember(self, key_id: str, nonce: str, *, now_ms: int, lifetime_s: int) -> bool:
        """Store the nonce; False when it was already seen and has not expired."""
        ...


class TaskRepository(Protocol):
    def create(self, task: Task, executions: list[Execution], record: CreateRecord | None) -> bool:
        """Store the task at once (with ``record`` under its key, raising IdempotencyKeyTaken if one is
        there) and a small fan-out's executions with it: True. A large one's executions are left to
        ``continue_fanout``: False."""
        ...

    def continue_fanout(self, task_id: str, now_ms: int, budget_s: float) -> bool:
        """Write the task's remaining executions for up to ``budget_s``; True once all are written."""
        ...

    def due_fanouts(self, now_ms: int, limit: int) -> list[str]:
        """Tasks whose fan-out is unfinished and whose writer's time is up (the duty resumes them)."""
        ...

    def find_create(self, actor: str, idempotency_key: str) -> CreateRecord | None: ...

    def get_task(self, task_id: str, *, consistent: bool = False) -> Task | None: ...

    def cancel_task(self, task_id: str, now_ms: int) -> bool:
        """Mark an active task cancelled (conditional: False when it is no longer active)."""
        ...

    def list_tasks(
        self, *, state: TaskState | None, limit: int, cursor: str | None, now_ms: int
    ) -> Page[Task]:
        """Newest first, among tasks created up to a year before ``now_ms``."""
        ...

    def executions_of(self, task: Task) -> list[Execution]: ...

    def get_execution(self, execution_id: str) -> Execution | None: ...

    def queued_for(self, agent_id: str, limit: int) -> list[Execution]:
        """The agent's queued executions, highest priority first, then oldest."""
        ...

    def count_queued(self, agent_id: str) -> int: ...

    def transition(self, before: Execution, after: Execution) -> bool:
        """Store ``after`` if the stored execution is still ``before`` (False: it changed meanwhile)."""
        ...

    def due(self, timer: DueTimer, now_ms: int, limit: int) -> list[str]:
        """Ids of executions whose timer passed (candidates: re-read before acting)."""
        ...
