"""Ports of the agent use cases: what they need from storage (adapters: fleetlink.store.agents)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fleetlink.core.agents.model import Agent, Presence, RegistrationEvent, RegistrationToken
from fleetlink.core.entities import AgentState, AuditRecord, Page


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
        self,
        agent_id: str,
        *,
        now_ms: int,
        reported_status: str | None,
        metrics: dict[str, float],
        sequence: int | None = None,
    ) -> None:
        """Update the presence; with a ``sequence`` only if it is greater than the last one recorded
        (else raise ``Unauthenticated`` code ``heartbeat-sequence-stale``, nothing written)."""
        ...

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
