"""Ports of the agent use cases: what they need from storage (adapters: fleetlink.store.agents)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from fleetlink.core.agents.model import Agent, Presence, RegistrationEvent, RegistrationToken
from fleetlink.core.entities import AgentState, AuditRecord, Page
from fleetlink.core.heartbeat import Heartbeat


@dataclass(frozen=True)
class AgentView:
    """An agent's profile with its presence (None before the first heartbeat).

    ``tunnels_version`` is kept on the presence item, which every signed request reads anyway: the
    heartbeat answers it without a read of its own.
    """

    agent: Agent
    presence: Presence | None
    tunnels_version: int = 0

    @property
    def agent_id(self) -> str:
        return self.agent.agent_id


@dataclass(frozen=True)
class TokenUse:
    """Consume one use of a registration token inside a registration write."""

    token_id: str
    now_ms: int


class AgentRepository(Protocol):
    def get_view(self, agent_id: str, *, consistent: bool = False) -> AgentView | None:
        """``consistent``: a strongly consistent read (authentication, identity changes)."""
        ...

    def list_views(
        self, *, state: AgentState | None, tag: tuple[str, str] | None, limit: int, cursor: str | None
    ) -> Page[AgentView]: ...

    def registration_history(self, agent_id: str, limit: int) -> list[RegistrationEvent]: ...

    def presences(self, agent_ids: list[str]) -> dict[str, Presence]:
        """The presence of each agent that has heartbeated (one BatchGetItem per 100)."""
        ...

    def record_heartbeat(
        self, agent_id: str, heartbeat: Heartbeat, *, now_ms: int, sequence: int | None = None
    ) -> None:
        """Update the presence with the heartbeat's status and metrics; with a ``sequence`` only if it
        is greater than the last one recorded (else raise ``Unauthenticated`` code
        ``heartbeat-sequence-stale``, nothing written)."""
        ...

    def revoke(self, agent: Agent, *, now_ms: int, audit: AuditRecord) -> Agent: ...

    def replace_tags(
        self, agent: Agent, tags: dict[str, str], *, now_ms: int, audit: AuditRecord
    ) -> Agent: ...


class RegistrationStore(Protocol):
    def create_token(self, token: RegistrationToken, audit: AuditRecord) -> None: ...

    def get_token(self, token_id: str) -> RegistrationToken | None: ...

    def list_tokens(self, *, limit: int, cursor: str | None) -> Page[RegistrationToken]:
        """Newest first, until TTL removes them (a week after they expire)."""
        ...

    def revoke_token(self, token_id: str, *, now_ms: int, audit: AuditRecord) -> RegistrationToken | None:
        """Mark the token revoked (kept if already); None when there is no such token."""
        ...

    def agents_seen_with(self, fingerprint: str, machine_id: str, limit: int) -> list[Agent]:
        """Agents ever registered with this fingerprint or machine id (evidence, not identity)."""
        ...

    def register_new(self, agent: Agent, event: RegistrationEvent, token_use: TokenUse) -> None: ...

    def save_identity(self, agent: Agent, event: RegistrationEvent, token_use: TokenUse | None) -> None:
        """Store a changed profile of an active agent (optimistically locked) with its history event."""
        ...


class NonceScope(StrEnum):
    AGENT = "agent"  # keyid = an agent id
    REGISTRATION = "registration"  # keyid = a fingerprint (its own namespace: it may look like anything)


class NonceStore(Protocol):
    def remember(self, scope: NonceScope, key_id: str, nonce: str, *, now_ms: int, lifetime_s: int) -> bool:
        """Store the nonce; False when it was already seen and has not expired."""
        ...
