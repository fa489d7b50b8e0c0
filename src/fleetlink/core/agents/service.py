"""Use cases on registered agents: heartbeat, and what operators see and do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fleetlink.core.clock import Clock
from fleetlink.core.commands import Heartbeat
from fleetlink.core.entities import Agent, AgentState, AuditRecord, Liveness, Page, RegistrationEvent
from fleetlink.core.errors import Forbidden, NotFound
from fleetlink.core.liveness import liveness
from fleetlink.core.ports import AgentRepository, AgentView

if TYPE_CHECKING:
    from fleetlink.core.task_service import TaskService

#: How many registration events an agent read returns.
HISTORY_LIMIT = 20


@dataclass(frozen=True)
class HeartbeatResult:
    server_time: int
    heartbeat_interval_s: int
    pending_executions: int
    tunnels_version: int
    renewed: list[str]
    cancel: list[str]


@dataclass(frozen=True)
class AgentStatus:
    """An agent as operators see it: profile, presence and derived liveness."""

    view: AgentView
    liveness: Liveness


def require_own(caller: Agent, agent_id: str) -> None:
    """An agent may act only on its own resources."""
    if caller.agent_id != agent_id:
        raise Forbidden("an agent may act only on its own resources", code="not-your-resource")


class AgentService:
    def __init__(
        self,
        agents: AgentRepository,
        clock: Clock,
        heartbeat_interval_s: int,
        tasks: TaskService | None = None,
    ) -> None:
        self._agents = agents
        self._clock = clock
        self._tasks = tasks
        self.heartbeat_interval_s = heartbeat_interval_s

    def heartbeat(self, caller: Agent, agent_id: str, command: Heartbeat) -> HeartbeatResult:
        require_own(caller, agent_id)
        now = self._clock.now_ms()
        self._agents.record_heartbeat(
            agent_id, now_ms=now, reported_status=command.status, metrics=command.metrics
        )
        renewal = self._tasks.renew(caller, command.running_executions) if self._tasks else None
        return HeartbeatResult(
            server_time=now,
            heartbeat_interval_s=self.heartbeat_interval_s,
            pending_executions=self._tasks.pending(agent_id) if self._tasks else 0,
            tunnels_version=0,
            renewed=renewal.renewed if renewal else [],
            cancel=renewal.cancel if renewal else [],
        )

    def get(self, agent_id: str) -> tuple[AgentStatus, list[RegistrationEvent]]:
        view = self._view(agent_id)
        return self._status(view), self._agents.registration_history(agent_id, HISTORY_LIMIT)

    def list(
        self,
        *,
        status: AgentState | Liveness | None,
        tag: tuple[str, str] | None,
        limit: int,
        cursor: str | None,
    ) -> Page[AgentStatus]:
        """A page of agents; a liveness filter is applied to the page (it may come back short)."""
        state = status if isinstance(status, AgentState) else None
        page = self._agents.list_views(state=state, tag=tag, limit=limit, cursor=cursor)
        items = [self._status(view) for view in page.items]
        if isinstance(status, Liveness):
            items = [item for item in items if item.liveness is status]
        return Page[AgentStatus](items=items, cursor=page.cursor)

    def revoke(self, agent_id: str, actor: str) -> AgentStatus:
        view = self._view(agent_id)
        if view.agent.state is AgentState.REVOKED:
            return self._status(view)
        now = self._clock.now_ms()
        agent = self._agents.revoke(
            view.agent, now_ms=now, audit=AuditRecord.of(actor, "agent.revoke", agent_id, now)
        )
        return self._status(AgentView(agent, view.presence))

    def replace_tags(self, agent_id: str, tags: dict[str, str], actor: str) -> AgentStatus:
        view = self._view(agent_id)
        now = self._clock.now_ms()
        audit = AuditRecord.of(actor, "agent.tags.replace", agent_id, now, before=view.agent.tags, after=tags)
        agent = self._agents.replace_tags(view.agent, tags, now_ms=now, audit=audit)
        return self._status(AgentView(agent, view.presence))

    def _view(self, agent_id: str) -> AgentView:
        view = self._agents.get_view(agent_id)
        if view is None:
            raise NotFound(f"no agent {agent_id}", code="agent-not-found")
        return view

    def _status(self, view: AgentView) -> AgentStatus:
        last_seen = view.presence.last_seen_at if view.presence else None
        return AgentStatus(view, liveness(last_seen, self._clock.now_ms(), self.heartbeat_interval_s))
