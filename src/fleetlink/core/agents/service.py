"""Use cases on registered agents: presence from heartbeats, and what operators see and do."""

from __future__ import annotations

from dataclasses import dataclass

from fleetlink.core.access import Caller
from fleetlink.core.agents.liveness import liveness
from fleetlink.core.agents.model import RegistrationEvent
from fleetlink.core.agents.ports import AgentRepository, AgentView
from fleetlink.core.audit import changes_between
from fleetlink.core.clock import Clock
from fleetlink.core.entities import AgentState, AuditRecord, Liveness, Page
from fleetlink.core.errors import NotFound
from fleetlink.core.heartbeat import Heartbeat

#: How many registration events an agent read returns.
HISTORY_LIMIT = 20


@dataclass(frozen=True)
class AgentStatus:
    """An agent as operators see it: profile, presence and derived liveness."""

    view: AgentView
    liveness: Liveness


class AgentService:
    def __init__(self, agents: AgentRepository, clock: Clock, heartbeat_interval_s: int) -> None:
        self._agents = agents
        self._clock = clock
        self.heartbeat_interval_s = heartbeat_interval_s

    def record_presence(self, caller: Caller, command: Heartbeat, now_ms: int, sequence: int | None) -> None:
        """Presence: the heartbeat's time, status and metrics, in one conditional write that also
        refuses a ``sequence`` not greater than the last one recorded."""
        self._agents.record_heartbeat(caller.agent_id, command, now_ms=now_ms, sequence=sequence)

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
        view = self._view(agent_id, consistent=True)
        if view.agent.state is AgentState.REVOKED:
            return self._status(view)
        now = self._clock.now_ms()
        change = changes_between({"state": view.agent.state.value}, {"state": AgentState.REVOKED.value})
        agent = self._agents.revoke(
            view.agent, now_ms=now, audit=AuditRecord.of(actor, "agent.revoke", agent_id, now, changes=change)
        )
        return self._status(AgentView(agent, view.presence))

    def replace_tags(self, agent_id: str, tags: dict[str, str], actor: str) -> AgentStatus:
        view = self._view(agent_id, consistent=True)
        now = self._clock.now_ms()
        change = changes_between({"tags": view.agent.tags}, {"tags": tags})
        audit = AuditRecord.of(actor, "agent.tags.replace", agent_id, now, changes=change)
        agent = self._agents.replace_tags(view.agent, tags, now_ms=now, audit=audit)
        return self._status(AgentView(agent, view.presence))

    def _view(self, agent_id: str, *, consistent: bool = False) -> AgentView:
        """The agent; ``consistent`` where a write rests on it (a stale read would be a 404 or a 409)."""
        view = self._agents.get_view(agent_id, consistent=consistent)
        if view is None:
            raise NotFound(f"no agent {agent_id}", code="agent-not-found")
        return view

    def _status(self, view: AgentView) -> AgentStatus:
        last_seen = view.presence.last_seen_at if view.presence else None
        return AgentStatus(view, liveness(last_seen, self._clock.now_ms(), self.heartbeat_interval_s))
