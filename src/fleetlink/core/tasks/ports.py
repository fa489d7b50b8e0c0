"""Ports of the task use cases: what they need from storage (adapter: fleetlink.store.tasks)."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from fleetlink.core.audit import AuditRecord
from fleetlink.core.entities import Page
from fleetlink.core.tasks.model import CreateRecord, Execution, Task, TaskProgress, TaskState


class DueTimer(StrEnum):
    LEASE = "lease"  # leased or running: the lease ends
    DELIVERY = "delivery"  # queued: the delivery deadline passes
    FANOUT = "fanout"  # a task whose executions are still being written


class TaskRepository(Protocol):
    def create(
        self, task: Task, executions: list[Execution], record: CreateRecord | None, audit: AuditRecord
    ) -> bool:
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

    def cancel_task(self, task_id: str, now_ms: int, audit: AuditRecord) -> bool:
        """Mark an active task cancelled with its ``audit`` entry (conditional: False, and no entry,
        when it is no longer active)."""
        ...

    def list_tasks(
        self, *, state: TaskState | None, limit: int, cursor: str | None, now_ms: int
    ) -> Page[Task]:
        """Newest first, among tasks created up to a year before ``now_ms``."""
        ...

    def progress_of(self, tasks: list[Task]) -> dict[str, TaskProgress]:
        """Open and finished execution counts of each task (batched reads of its count shards)."""
        ...

    def executions_of(self, task: Task) -> list[Execution]: ...

    def get_execution(self, execution_id: str) -> Execution | None: ...

    def queued_for(self, agent_id: str, limit: int) -> list[Execution]:
        """The agent's queued executions, highest priority first, then oldest."""
        ...

    def leased_unstarted(self, agent_id: str, limit: int) -> list[Execution]:
        """The agent's leased executions not yet running (from an index that may lag)."""
        ...

    def count_queued(self, agent_id: str) -> int:
        """Queued executions of the agent, and leased ones it has not started."""
        ...

    def transition(self, before: Execution, after: Execution) -> bool:
        """Store ``after`` if the stored execution is still ``before`` (False: it changed meanwhile)."""
        ...

    def settle(self, execution: Execution) -> None:
        """Finish ``execution``'s task if it was the last open one (again: a write may have failed)."""
        ...

    def due(self, timer: DueTimer, now_ms: int, limit: int) -> list[str]:
        """Ids of executions whose timer passed (candidates: re-read before acting)."""
        ...
