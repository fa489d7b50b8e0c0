"""Wire models of the tunnel API, shared by the handlers and the agent client: the tunnel as
answered, the agent's desired state, events, lists and the fleet's health summary.

The words and commands (providers, modes, health, events; create, patch, status reports, event
batches) are the core's (``fleetlink.core.tunnels.model``) and are re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.tunnels.model import (
    MAX_EVENTS_PER_REQUEST,
    MAX_ROUTES,
    MAX_SECRET_BYTES,
    PROVIDER_MODES,
    TUNNEL_ID_PATTERN,
    EventIn,
    EventLevel,
    EventsBatch,
    EventType,
    Health,
    Mode,
    Provider,
    Route,
    RouteSpec,
    SealedSecret,
    StatusReport,
    TunnelCreate,
    TunnelFields,
    TunnelPatch,
    split_host_port,
)

if TYPE_CHECKING:  # the handlers' domain objects; the agent never calls the `of` constructors
    from fleetlink.core.tunnels.model import TunnelEvent
    from fleetlink.core.tunnels.service import HealthCount, TunnelView

__all__ = [
    "MAX_EVENTS_PER_REQUEST",
    "MAX_ROUTES",
    "MAX_SECRET_BYTES",
    "PROVIDER_MODES",
    "DesiredState",
    "DesiredTunnel",
    "Event",
    "EventIn",
    "EventLevel",
    "EventList",
    "EventType",
    "EventsBatch",
    "Health",
    "HealthSummary",
    "Mode",
    "Provider",
    "Route",
    "RouteSpec",
    "StatusReport",
    "Tunnel",
    "TunnelCreate",
    "TunnelList",
    "TunnelPatch",
    "split_host_port",
]


class Tunnel(TunnelFields):
    """A tunnel as answered to operators and agents (never a plaintext secret)."""

    tunnel_id: Annotated[str, Field(pattern=TUNNEL_ID_PATTERN)]
    public_url: str | None = None
    enabled: bool
    health: Health = Health.UNKNOWN
    routes: list[Route] = Field(default_factory=list)
    last_heartbeat_at: int | None = None
    last_error_code: str | None = None
    last_error_message: str | None = None
    created_at: int
    updated_at: int

    @classmethod
    def of(cls, view: TunnelView) -> Tunnel:
        """As operators see it: the health derived from the agent's liveness, no secret at all."""
        return cls(**_answer_fields(view))


def _answer_fields(view: TunnelView) -> dict[str, Any]:
    record = view.record
    return record.model_dump(exclude={"sealed_secret", "status_at", "version", "health"}) | {
        "health": view.health,
        "last_heartbeat_at": view.last_seen_at,
    }


class DesiredTunnel(Tunnel):
    """One tunnel of an agent's desired state; its secret only sealed to the agent's key
    (context ``b"tunnel:" + tunnel_id``)."""

    sealed_secret: SealedSecret | None = None

    @classmethod
    def of(cls, view: TunnelView) -> DesiredTunnel:
        return cls(**_answer_fields(view), sealed_secret=view.record.sealed_secret)


class DesiredState(DeferredModel):
    """``GET /v1/agents/{agent_id}/tunnels`` as the agent reads it."""

    tunnels: list[DesiredTunnel]
    tunnels_version: int | None = None


class TunnelList(DeferredModel):
    items: list[Tunnel]
    cursor: str | None = Field(description="Pass back to get the next page; null on the last page")


class Event(DeferredModel):
    """An event as answered (newest first in lists)."""

    event_id: str
    tunnel_id: str | None
    agent_id: str | None = None
    level: EventLevel
    event_type: EventType
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: int

    @classmethod
    def of(cls, event: TunnelEvent) -> Event:
        return cls.model_validate(event, from_attributes=True)


class EventList(DeferredModel):
    items: list[Event]
    cursor: str | None = Field(description="Pass back to get the next (older) page; null on the last")


class HealthCountRow(DeferredModel):
    provider: Provider
    health: Health
    count: int


class HealthSummary(DeferredModel):
    """``GET /v1/tunnels/health``: tunnels by provider and health (silent agents' tunnels: unknown)."""

    total: int
    by_health: dict[Health, int]
    by_provider: dict[Provider, int]
    counts: Annotated[list[HealthCountRow], Field(description="One row per (provider, health) present")]
    enabled: int

    @classmethod
    def of(cls, counts: list[HealthCount], enabled: int) -> HealthSummary:
        by_health = dict.fromkeys(Health, 0)
        by_provider = dict.fromkeys(Provider, 0)
        for row in counts:
            by_health[row.health] += row.count
            by_provider[row.provider] += row.count
        return cls(
            total=sum(row.count for row in counts),
            by_health=by_health,
            by_provider=by_provider,
            counts=[HealthCountRow.model_validate(row, from_attributes=True) for row in counts],
            enabled=enabled,
        )
