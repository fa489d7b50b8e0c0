"""An agent's executions, newest first: what the console's agent page lists as its tasks."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.api.params import AgentIdPath
from fleetlink.contract.agent_executions import AgentExecution, AgentExecutionList
from fleetlink.core.roles import Role

router = Router()
VIEWER = security.operator_access(Role.VIEWER, ["tasks"])


@router.get(
    "/agents/<agent_id>/executions",
    summary="An agent's executions, newest first (an unknown agent has none)",
    **VIEWER,
)
def list_agent_executions(
    agent_id: AgentIdPath,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> AgentExecutionList:
    from fleetlink.store.agent_executions import DynamoAgentExecutions

    page = DynamoAgentExecutions(get_deps().cursors).recent(agent_id, limit=limit, cursor=cursor)
    return AgentExecutionList(items=[AgentExecution.of(e) for e in page.items], cursor=page.cursor)
