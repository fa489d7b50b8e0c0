"""``TaskRunner``: the tasks service with a heartbeat under a supervisor of its own, for embedding
and tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from fleetlink.agent.daemon import HeartbeatApi, HeartbeatService, Supervisor
from fleetlink.agent.tasks.handlers import HandlerRegistry
from fleetlink.agent.tasks.service import DEFAULT_CONCURRENCY, TasksApi, TasksService
from fleetlink.agent.tasks.store import (
    AgentStore,
)


class TaskRunner:
    """The tasks service and a heartbeat under a supervisor of their own (no first-beat jitter)."""

    def __init__(
        self,
        client: TaskRunnerApi,
        store: AgentStore,
        registry: HandlerRegistry | None,
        agent_id: str,
        concurrency: int = DEFAULT_CONCURRENCY,
        *,
        metrics: Callable[[], Mapping[str, float]] | None = None,
        first_beat_jitter_s: float = 0.0,
        **options: Any,
    ) -> None:
        self.tasks = TasksService(client, store, registry, agent_id, concurrency, **options)
        self.heartbeat = HeartbeatService(
            client,
            agent_id,
            running_executions=self.tasks.running_ids,
            host_metrics=metrics,
            first_beat_jitter_s=first_beat_jitter_s,
        )
        self.supervisor = Supervisor(self.heartbeat, [self.tasks])
        self.tasks.on_started = self.wake

    @property
    def store(self) -> AgentStore:
        return self.tasks.store

    @property
    def stopping(self) -> bool:
        return self.supervisor.stopping

    def running_ids(self) -> list[str]:
        return self.tasks.running_ids()

    def wake(self) -> None:
        """Beat now (and so claim what is pending) instead of at the next heartbeat interval."""
        self.supervisor.wake(HeartbeatService.name)

    def request_stop(self, *, urgent: bool = False) -> None:
        """Stop claiming; running executions get ``stop_grace_s`` to finish (none when ``urgent``)."""
        self.supervisor.request_stop(urgent=urgent)

    def run(self) -> None:
        """Recover, then run until :meth:`request_stop`; API errors retrying cannot fix (a revoked agent)
        stop the runner and are raised once it has stopped."""
        self.supervisor.run()


class TaskRunnerApi(TasksApi, HeartbeatApi, Protocol):
    """What :class:`TaskRunner` calls: the heartbeat and the task calls."""
