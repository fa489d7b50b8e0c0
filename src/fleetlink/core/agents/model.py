"""Agents: who an agent is, what its last heartbeat said, its registrations and registration tokens."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.entities import AgentState, Hardware, KeyAlg


class RegistrationEventKind(StrEnum):
    REGISTER = "register"  # a new agent, with a registration token and its new key
    RE_REGISTER = "re-register"  # restart or hardware change, signed by the current key
    KEY_ROTATION = "key-rotation"  # a new key installed by a request signed with the current one
    RECOVER = "recover"  # a new key took over the id with an operator's recovery token
    UPGRADE = "upgrade"  # the agent runs a new release (self-update), reported once it heartbeats
    ROLLBACK = "rollback"  # a new release did not heartbeat in time: the previous one runs again


class TokenPurpose(StrEnum):
    REGISTRATION = "registration"  # registers new agents
    RECOVERY = "recovery"  # lets one new key take over one agent id, once


class Agent(DeferredModel):
    agent_id: str
    fingerprint: str
    name: str
    key_alg: KeyAlg
    public_key: str
    encryption_public_key: str | None = None
    hardware: Hardware
    tags: dict[str, str] = Field(default_factory=dict)
    capabilities: list[str] = Field(default_factory=list)
    agent_version: str | None = None
    state: AgentState = AgentState.ACTIVE
    registered_at: int
    updated_at: int
    revoked_at: int | None = None
    #: Soft-deleted (``agents rm``, or the agent deregistered): hidden from lists, purged later.
    deleted_at: int | None = None
    version: int | None = None


class Presence(DeferredModel):
    """What the last heartbeat said; absent until the first one."""

    last_seen_at: int
    reported_status: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    heartbeats: int = 0


class Resemblance(DeferredModel):
    """A known agent whose hardware a new registration resembles (evidence for the operator only)."""

    agent_id: str
    score: int = Field(description="Hardware similarity 0-100")
    same_fingerprint: bool


class RegistrationEvent(DeferredModel):
    event_id: str
    agent_id: str
    event: RegistrationEventKind
    success: bool
    similarity_score: int | None = None
    key_changed: bool = False
    token_id: str | None = None
    reason: str | None = None
    hardware: Hardware
    at: int
    resembles: Resemblance | None = None


class RegistrationToken(DeferredModel):
    token_id: str
    secret_hash: str
    purpose: TokenPurpose = TokenPurpose.REGISTRATION
    #: The one agent a recovery token may take over.
    agent_id: str | None = None
    name_prefix: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    max_uses: int
    uses: int = 0
    expires_at: int
    created_at: int
    created_by: str
    revoked_at: int | None = None
