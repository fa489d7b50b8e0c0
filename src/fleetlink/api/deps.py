"""The dependencies of a handler, built once per container on first use (never at import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fleetlink.api.settings import Settings
from fleetlink.core.clock import Clock, SystemClock

if TYPE_CHECKING:  # each function imports only the use cases it calls (cold start)
    from fleetlink.core.agents import AgentService
    from fleetlink.core.ports import AgentRepository, NonceStore, RegistrationStore, TaskRepository
    from fleetlink.core.recovery import RecoveryService
    from fleetlink.core.registration import RegistrationService
    from fleetlink.core.task_service import TaskService


@dataclass(frozen=True)
class Deps:
    settings: Settings
    clock: Clock
    agents: AgentRepository
    registrations: RegistrationStore
    nonces: NonceStore
    tasks: TaskRepository

    @property
    def registration(self) -> RegistrationService:
        from fleetlink.core.registration import RegistrationService

        return RegistrationService(self.registrations, self.agents, self.clock)

    @property
    def recovery(self) -> RecoveryService:
        from fleetlink.core.recovery import RecoveryService

        return RecoveryService(self.registration, self.registrations, self.agents, self.clock)

    @property
    def agent_service(self) -> AgentService:
        from fleetlink.core.agents import AgentService

        return AgentService(self.agents, self.clock, self.settings.heartbeat_interval_s, self.task_service)

    @property
    def task_service(self) -> TaskService:
        from fleetlink.core.task_service import TaskService

        return TaskService(self.tasks, self.agents, self.clock, self.settings.heartbeat_interval_s)


def build_deps(settings: Settings, clock: Clock | None = None) -> Deps:
    """Deps on DynamoDB for these settings."""
    from fleetlink.store.cursors import CursorCodec
    from fleetlink.store.models import bind_table
    from fleetlink.store.repositories import DynamoAgentRepository, DynamoNonceStore, DynamoRegistrationStore
    from fleetlink.store.tasks_repository import DynamoTaskRepository

    bind_table(settings.table_name, settings.region, settings.dynamodb_endpoint)
    cursors = CursorCodec(settings.cursor_key)
    return Deps(
        settings=settings,
        clock=clock or SystemClock(),
        agents=DynamoAgentRepository(cursors),
        registrations=DynamoRegistrationStore(cursors),
        nonces=DynamoNonceStore(),
        tasks=DynamoTaskRepository(settings.retention_days, cursors),
    )


_current: Deps | None = None


def get_deps() -> Deps:
    """The container's deps: built from the environment on first use."""
    global _current
    if _current is None:
        _current = build_deps(Settings.from_env())
    return _current


def set_deps(deps: Deps | None) -> None:
    """Use these deps from now on (tests, the dev stack); None rebuilds from the environment."""
    global _current
    _current = deps
