"""Wire models of the agent and registration routes, shared by the handlers and the agent client.

Requests are the core commands; these are the answers. Pydantic only: the agent imports this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from fleetlink.core.agents.model import RegistrationEvent, RegistrationEventKind, TokenPurpose
from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.entities import AgentState, Hardware, KeyAlg, Liveness

if TYPE_CHECKING:  # the handlers' domain objects; the agent never calls the `of` constructors
    from fleetlink.core.agents.model import RegistrationToken
    from fleetlink.core.agents.service import AgentStatus
    from fleetlink.core.heartbeat import HeartbeatResult


class TokenCreated(DeferredModel):
    token: str = Field(description="The registration token; shown once, stored only hashed")
    token_id: str
    expires_at: int
    max_uses: int
    tags: dict[str, str]
    name_prefix: str | None


class TokenSummary(DeferredModel):
    """A registration or recovery token as operators list it: never its secret."""

    token_id: str
    purpose: TokenPurpose
    agent_id: str | None = Field(description="The one agent a recovery token may take over")
    name_prefix: str | None
    tags: dict[str, str]
    max_uses: int
    uses: int
    expires_at: int
    created_at: int
    created_by: str
    revoked_at: int | None

    @classmethod
    def of(cls, token: RegistrationToken) -> TokenSummary:
        return cls.model_validate(token.model_dump(exclude={"secret_hash"}))


class TokenList(DeferredModel):
    items: list[TokenSummary]
    cursor: str | None = Field(description="Pass back to get the next page; null on the last page")


class RecoveryTokenCreated(DeferredModel):
    token: str = Field(description="Single-use recovery token for this agent id; shown once, stored hashed")
    token_id: str
    agent_id: str
    expires_at: int


class KeyRotated(DeferredModel):
    agent_id: str
    key_alg: KeyAlg
    public_key: str
    updated_at: int


class Registered(DeferredModel):
    agent_id: str
    event: RegistrationEventKind
    similarity_score: int | None = Field(
        description="0-100 against the known hardware; null on first register"
    )
    heartbeat_interval_s: int
    server_time: int


class HeartbeatAck(DeferredModel):
    # Always sent; the default lets an agent read an answer from a server that predates ``cancel``.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    server_time: int
    heartbeat_interval_s: int
    pending_executions: int = Field(description="Queued executions waiting for this agent: claim when > 0")
    tunnels_version: int
    renewed: list[str] = Field(description="Of running_executions, those whose lease was renewed")
    cancel: list[str] = Field(
        default_factory=list, description="Of running_executions, those the agent must stop"
    )

    @classmethod
    def of(cls, result: HeartbeatResult) -> HeartbeatAck:
        return cls.model_validate(result, from_attributes=True)


class AgentSummary(DeferredModel):
    agent_id: str
    name: str
    state: AgentState
    liveness: Liveness
    last_seen_at: int | None
    reported_status: str | None
    metrics: dict[str, float]
    tags: dict[str, str]
    capabilities: list[str]
    agent_version: str | None
    fingerprint: str
    key_alg: KeyAlg
    public_key: str
    encryption_public_key: str | None
    hardware: Hardware
    registered_at: int
    updated_at: int
    revoked_at: int | None
    deleted_at: int | None = Field(default=None, description="Soft-deleted: hidden from lists, purged later")

    @classmethod
    def of(cls, status: AgentStatus) -> AgentSummary:
        agent, presence = status.view.agent, status.view.presence
        return cls(
            **agent.model_dump(exclude={"version"}),
            liveness=status.liveness,
            last_seen_at=presence.last_seen_at if presence else None,
            reported_status=presence.reported_status if presence else None,
            metrics=presence.metrics if presence else {},
        )


class AgentDetail(AgentSummary):
    registration_history: list[RegistrationEvent] = Field(description="Newest first")


class AgentList(DeferredModel):
    items: list[AgentSummary]
    cursor: str | None = Field(description="Pass back to get the next page; null on the last page")


class ServiceHealth(DeferredModel):
    status: str
    version: str
    checks: dict[str, Any] = Field(default_factory=dict)
