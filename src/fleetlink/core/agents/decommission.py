"""Decommissioning: an agent soft-deleted (revoked, hidden from lists, restorable for the retention),
then purged by a cleanup duty: every item it left, found by its keys (never a Scan)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fleetlink.core.agents.liveness import liveness
from fleetlink.core.agents.model import Agent
from fleetlink.core.agents.ports import AgentRepository, AgentView
from fleetlink.core.agents.service import AgentStatus
from fleetlink.core.clock import Clock
from fleetlink.core.entities import AuditRecord, Page
from fleetlink.core.errors import Conflict, NotFound

#: Purges a duty run does at most (the rest wait for the next run).
PURGES_PER_RUN = 25
#: Who the audit log names for a purge the cleanup duty did (the retention ended).
PURGE_DUTY_ACTOR = "fleetlink:agent-purge"


class DecommissionRepository(Protocol):
    def soft_delete(self, agent: Agent, *, now_ms: int, purge_at_ms: int, audit: AuditRecord) -> Agent:
        """Revoke and hide the agent, drop its tag memberships, set its purge timer (one transaction)."""

    def restore(self, agent: Agent, *, now_ms: int, audit: AuditRecord) -> Agent:
        """Active and listed again, tags back, timer gone (one transaction)."""

    def list_deleted(self, *, limit: int, cursor: str | None) -> Page[Agent]:
        """Soft-deleted agents not yet purged."""

    def due_purges(self, now_ms: int, limit: int) -> list[str]:
        """Agents whose purge is due."""

    def purge(self, agent_id: str, audit: AuditRecord) -> int:
        """Delete every item the (soft-deleted) agent left; how many (0: not deleted, or gone). The
        last deletes (its profile and purge timer) and ``audit`` (with the count) are one transaction."""


@dataclass(frozen=True)
class DecommissionService:
    agents: AgentRepository
    repository: DecommissionRepository
    clock: Clock
    heartbeat_interval_s: int
    #: How long a deleted agent can be restored before it is purged.
    retention_s: int

    def _view(self, agent_id: str) -> AgentView:
        view = self.agents.get_view(agent_id, consistent=True)
        if view is None:
            raise NotFound(f"no agent {agent_id} (or it was purged)", code="agent-not-found")
        return view

    def _status(self, agent: Agent, view: AgentView) -> AgentStatus:
        last_seen = view.presence.last_seen_at if view.presence else None
        return AgentStatus(
            AgentView(agent, view.presence, tunnels_version=view.tunnels_version),
            liveness(last_seen, self.clock.now_ms(), self.heartbeat_interval_s),
        )

    def remove(self, agent_id: str, actor: str) -> AgentStatus:
        """Soft-delete (idempotent): revoked at once, purged after the retention unless restored."""
        view = self._view(agent_id)
        if view.agent.deleted_at is not None:
            return self._status(view.agent, view)
        now = self.clock.now_ms()
        audit = AuditRecord.of(actor, "agent.delete", agent_id, now, purge_after_s=self.retention_s)
        agent = self.repository.soft_delete(
            view.agent, now_ms=now, purge_at_ms=now + self.retention_s * 1000, audit=audit
        )
        return self._status(agent, view)

    def restore(self, agent_id: str, actor: str) -> AgentStatus:
        view = self._view(agent_id)
        if view.agent.deleted_at is None:
            raise Conflict(f"agent {agent_id} is not deleted", code="agent-not-deleted")
        now = self.clock.now_ms()
        agent = self.repository.restore(
            view.agent, now_ms=now, audit=AuditRecord.of(actor, "agent.restore", agent_id, now)
        )
        return self._status(agent, view)

    def purge_now(self, agent_id: str, actor: str) -> int:
        """Purge a soft-deleted agent without waiting for the retention (irreversible)."""
        view = self._view(agent_id)
        if view.agent.deleted_at is None:
            raise Conflict(
                f"agent {agent_id} is not deleted: delete it first (fleetlink agents rm)",
                code="agent-not-deleted",
            )
        return self._purge(agent_id, actor)

    def _purge(self, agent_id: str, actor: str) -> int:
        return self.repository.purge(
            agent_id, AuditRecord.of(actor, "agent.purge", agent_id, self.clock.now_ms())
        )

    def list_deleted(self, *, limit: int, cursor: str | None) -> Page[Agent]:
        return self.repository.list_deleted(limit=limit, cursor=cursor)

    def purge_due(self) -> int:
        """The cleanup duty: purge agents whose retention ended; items deleted."""
        return sum(
            self._purge(agent_id, PURGE_DUTY_ACTOR)
            for agent_id in self.repository.due_purges(self.clock.now_ms(), PURGES_PER_RUN)
        )
