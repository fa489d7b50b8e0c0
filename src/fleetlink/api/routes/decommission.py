"""Decommissioning agents: soft delete (operator), deregistration (the agent itself), restore, purge."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.api.params import AgentIdPath
from fleetlink.contract.agents import AgentList, AgentSummary
from fleetlink.contract.rollout import PurgeResult
from fleetlink.core.agents.liveness import liveness
from fleetlink.core.agents.ports import AgentView
from fleetlink.core.agents.service import AgentStatus
from fleetlink.core.errors import Forbidden
from fleetlink.core.roles import Role

router = Router()
VIEWER = security.operator_access(Role.VIEWER, ["operator"])
ADMIN = security.operator_access(Role.ADMIN, ["operator"])
AGENT = security.agent_access(["agent"])


@router.delete(
    "/agents/<agent_id>",
    summary="Delete an agent: revoked and hidden at once, restorable until the retention ends, then purged",
    **ADMIN,
)
def delete_agent(agent_id: AgentIdPath) -> AgentSummary:
    return AgentSummary.of(get_deps().decommission.remove(agent_id, security.operator_actor(router)))


@router.post("/agents/<agent_id>/restore", summary="Restore a deleted agent before it is purged", **ADMIN)
def restore_agent(agent_id: AgentIdPath) -> AgentSummary:
    return AgentSummary.of(get_deps().decommission.restore(agent_id, security.operator_actor(router)))


@router.post(
    "/agents/<agent_id>/purge",
    summary="Purge a deleted agent now, without waiting (irreversible)",
    **ADMIN,
)
def purge_agent(agent_id: AgentIdPath) -> PurgeResult:
    return PurgeResult(
        agent_id=agent_id,
        purged_items=get_deps().decommission.purge_now(agent_id, security.operator_actor(router)),
    )


@router.get("/deleted-agents", summary="Deleted agents not purged yet", **VIEWER)
def list_deleted_agents(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> AgentList:
    deps = get_deps()
    page = deps.decommission.list_deleted(limit=limit, cursor=cursor)
    now, interval = deps.clock.now_ms(), deps.settings.heartbeat_interval_s
    items = [
        AgentSummary.of(AgentStatus(AgentView(a, None), liveness(None, now, interval))) for a in page.items
    ]
    return AgentList(items=items, cursor=page.cursor)


@router.post(
    "/agents/<agent_id>/deregister",
    summary="An agent retiring itself (signed by its key): deleted as by an operator",
    **AGENT,
)
def deregister_agent(agent_id: AgentIdPath) -> AgentSummary:
    caller = security.calling_agent(router)
    if caller.agent_id != agent_id:
        raise Forbidden("an agent may deregister only itself", code="not-your-agent")
    return AgentSummary.of(get_deps().decommission.remove(agent_id, f"agent:{agent_id}"))
