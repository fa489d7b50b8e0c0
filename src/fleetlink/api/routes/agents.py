"""What operators see and do with agents."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.api.params import AgentIdPath
from fleetlink.contract.agents import AgentDetail, AgentList, AgentSummary
from fleetlink.core.agents.commands import ReplaceTags
from fleetlink.core.entities import AgentState, Liveness
from fleetlink.core.errors import InvalidInput
from fleetlink.core.roles import Role

router = Router()
VIEWER = security.operator_access(Role.VIEWER, ["operator"])
OPERATOR = security.operator_access(Role.OPERATOR, ["operator"])
ADMIN = security.operator_access(Role.ADMIN, ["operator"])

StatusFilter = Annotated[
    AgentState | Liveness | None,
    Query(description="active, revoked, online, connection_lost or never_seen"),
]
TagFilter = Annotated[str | None, Query(description="key:value", max_length=200)]


def _tag(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    key, sep, tag_value = value.partition(":")
    if not sep or not key:
        raise InvalidInput("tag must be key:value", code="invalid-tag-filter")
    return key, tag_value


@router.get("/agents", summary="List agents", **VIEWER)
def list_agents(
    status: StatusFilter = None,
    tag: TagFilter = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> AgentList:
    page = get_deps().agent_service.list(status=status, tag=_tag(tag), limit=limit, cursor=cursor)
    return AgentList(items=[AgentSummary.of(item) for item in page.items], cursor=page.cursor)


@router.get("/agents/<agent_id>", summary="An agent with liveness and registration history", **VIEWER)
def get_agent(agent_id: AgentIdPath) -> AgentDetail:
    status, history = get_deps().agent_service.get(agent_id)
    return AgentDetail(**AgentSummary.of(status).model_dump(), registration_history=history)


@router.post("/agents/<agent_id>/revoke", summary="Revoke an agent (idempotent)", **ADMIN)
def revoke_agent(agent_id: AgentIdPath) -> AgentSummary:
    return AgentSummary.of(get_deps().agent_service.revoke(agent_id, security.operator_actor(router)))


@router.put("/agents/<agent_id>/tags", summary="Replace an agent's tags", **OPERATOR)
def replace_agent_tags(agent_id: AgentIdPath, command: Annotated[ReplaceTags, Body()]) -> AgentSummary:
    status = get_deps().agent_service.replace_tags(agent_id, command.tags, security.operator_actor(router))
    return AgentSummary.of(status)
