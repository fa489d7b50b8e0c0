"""Tunnels: operators declare and watch them; agents fetch their desired state, report status and
events. (Operators list one agent's tunnels with ``GET /tunnels?agent_id=``: API Gateway authorizes a
route one way, and ``GET /agents/{agent_id}/tunnels`` is the agent's, signed.)"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.api.params import AgentIdPath
from fleetlink.contract.tunnels import (
    DesiredState,
    DesiredTunnel,
    Event,
    EventList,
    HealthSummary,
    Tunnel,
    TunnelList,
)
from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.ids import IdPrefix, id_pattern
from fleetlink.core.roles import Role
from fleetlink.core.tunnels.model import (
    EventsBatch,
    Health,
    Provider,
    StatusReport,
    TunnelCreate,
    TunnelPatch,
)

router = Router()
VIEWER = security.operator_access(Role.VIEWER, ["tunnels"])
OPERATOR = security.operator_access(Role.OPERATOR, ["tunnels"])
AGENT = security.agent_access(["agent"])
TunnelIdPath = Annotated[str, Path(pattern=id_pattern(IdPrefix.TUNNEL), description="tun_ id")]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=2048)]


class StatusRecorded(DeferredModel):
    tunnel_id: str
    health: Health
    changed: bool


class EventsAccepted(DeferredModel):
    accepted: int


# --- operators: fleet views first (their literal paths win over /tunnels/{tunnel_id}) ---------------


@router.get("/tunnels/health", summary="Tunnels by provider and health, fleet-wide", **VIEWER)
def health_summary() -> HealthSummary:
    counts, enabled = get_deps().tunnel_service.health_summary()
    return HealthSummary.of(counts, enabled)


@router.get("/tunnels/events", summary="Recent tunnel events across the fleet, newest first", **VIEWER)
def fleet_events(
    errors: Annotated[bool, Query(description="Only error events")] = False,
    since: Annotated[int | None, Query(ge=0, lt=10**13, description="Epoch ms; default 24 h ago")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> EventList:
    page = get_deps().tunnel_service.fleet_events(
        errors_only=errors, since_ms=since, limit=limit, cursor=cursor
    )
    return EventList(items=[Event.of(e) for e in page.items], cursor=page.cursor)


@router.get("/tunnels", summary="List tunnels (fleet-wide or one agent's)", **VIEWER)
def list_tunnels(
    agent_id: Annotated[str | None, Query(pattern=id_pattern(IdPrefix.AGENT))] = None,
    provider: Annotated[Provider | None, Query()] = None,
    health: Annotated[Health | None, Query()] = None,
    enabled: Annotated[bool | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TunnelList:
    page = get_deps().tunnel_service.list_fleet(
        agent_id=agent_id, provider=provider, health=health, enabled=enabled, limit=limit, cursor=cursor
    )
    return TunnelList(items=[Tunnel.of(view) for view in page.items], cursor=page.cursor)


@router.post(
    "/agents/<agent_id>/tunnels", summary="Create a tunnel for an agent", status_code=201, **OPERATOR
)
def create_tunnel(agent_id: AgentIdPath, command: Annotated[TunnelCreate, Body()]) -> Response[Tunnel]:
    view = get_deps().tunnel_service.create(agent_id, command, security.operator_actor(router))
    return Response(201, "application/json", Tunnel.of(view))


@router.get("/tunnels/<tunnel_id>", summary="A tunnel", **VIEWER)
def get_tunnel(tunnel_id: TunnelIdPath) -> Tunnel:
    return Tunnel.of(get_deps().tunnel_service.get(tunnel_id))


@router.patch("/tunnels/<tunnel_id>", summary="Change a tunnel (enable, routes, target, secret)", **OPERATOR)
def patch_tunnel(tunnel_id: TunnelIdPath, command: Annotated[TunnelPatch, Body()]) -> Tunnel:
    return Tunnel.of(get_deps().tunnel_service.patch(tunnel_id, command, security.operator_actor(router)))


@router.delete(
    "/tunnels/<tunnel_id>", summary="Delete a tunnel (its agent stops it)", status_code=204, **OPERATOR
)
def delete_tunnel(tunnel_id: TunnelIdPath) -> Response[None]:
    get_deps().tunnel_service.delete(tunnel_id, security.operator_actor(router))
    return Response(204, None, None)


@router.get("/tunnels/<tunnel_id>/events", summary="A tunnel's events, newest first", **VIEWER)
def tunnel_events(tunnel_id: TunnelIdPath, limit: Limit = 50, cursor: Cursor = None) -> EventList:
    page = get_deps().tunnel_service.events(tunnel_id, limit=limit, cursor=cursor)
    return EventList(items=[Event.of(e) for e in page.items], cursor=page.cursor)


# --- agents --------------------------------------------------------------------------------------


@router.get("/agents/<agent_id>/tunnels", summary="The agent's desired tunnel state", **AGENT)
def desired_state(agent_id: AgentIdPath) -> DesiredState:
    views = get_deps().tunnel_service.desired_state(security.calling_agent(router), agent_id)
    return DesiredState(tunnels=[DesiredTunnel.of(view) for view in views])


@router.put("/tunnels/<tunnel_id>/status", summary="Report a tunnel's status", **AGENT)
def report_status(tunnel_id: TunnelIdPath, report: Annotated[StatusReport, Body()]) -> StatusRecorded:
    view, changed = get_deps().tunnel_service.report_status(security.calling_agent(router), tunnel_id, report)
    return StatusRecorded(tunnel_id=tunnel_id, health=view.health, changed=changed)


@router.post("/tunnels/<tunnel_id>/events", summary="Append a tunnel's events (at most 100)", **AGENT)
def post_events(tunnel_id: TunnelIdPath, batch: Annotated[EventsBatch, Body()]) -> EventsAccepted:
    accepted = get_deps().tunnel_service.add_events(security.calling_agent(router), tunnel_id, batch)
    return EventsAccepted(accepted=accepted)
