"""Ports of the task use cases: what they need from storage (adapter: fleetlink.store.tasks)."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from fleetlink.core.entities import Page
from fleetlink.core.tasks.model import Execution, Task, TaskProgress, TaskState


class DueTimer(StrEnum):
    LEASE = "lease"  # leased or running: the lease ends
    DELIVERY = "delivery"  # queued: the delivery deadline passes


class TaskRepository(Protocol):
    def create(self, task: Task, executions: list[Execution]) -> None: ...

    def get_task(self, task_id: str) -> Task | None: ...

    def save_task(self, task: Task) -> None: ...

    def list_tasks(
        self, *, state: TaskState | None, limit: int, cursor: str | None, now_ms: int
    ) -> Page[Task]:
        """Newest first, among tasks created up to a year before ``now_ms``."""
        ...

    def progress_of(self, task_ids: list[str]) -> dict[str, TaskProgress]:
        """Open and finished execution counts of each task (batched reads of its count shards)."""
        ...

    def executions_of(self, task_id: str) -> list[Execution]: ...

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
