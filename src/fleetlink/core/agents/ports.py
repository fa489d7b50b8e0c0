"""Ports of the agent use cases: what they need from storage (adapters: fleetlink.store.agents)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fleetlink.core.agents.model import Agent, Presence, RegistrationEvent, RegistrationToken
from fleetlink.core.entities import AgentState, AuditRecord, Page


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
    def get_view(self, agent_id: str) -> AgentView | None: ...

    def list_views(
        self, *, state: AgentState | None, tag: tuple[str, str] | None, limit: int, cursor: str | None
    ) -> Page[AgentView]: ...

    def registration_history(self, agent_id: str, limit: int) -> list[RegistrationEvent]: ...

    def presences(self, agent_ids: list[str]) -> dict[str, Presence]:
        """The presence of each agent that has heartbeated (one BatchGetItem per 100)."""
        ...

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
