"""Executions, as agents see them: claim, report, read their own."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.api.params import AgentIdPath
from fleetlink.contract.tasks import Claimed, ExecutionDetail, Lease, ResultRecorded, ResultReport
from fleetlink.core.ids import IdPrefix, id_pattern
from fleetlink.core.tasks.model import ClaimExecutions

router = Router()
AGENT = security.agent_access(["agent"])
ExecutionIdPath = Annotated[str, Path(pattern=id_pattern(IdPrefix.EXECUTION), description="exe_ id")]


@router.post("/agents/<agent_id>/executions/claim", summary="Lease queued executions", **AGENT)
def claim_executions(agent_id: AgentIdPath, command: Annotated[ClaimExecutions, Body()]) -> Claimed:
    claimed = get_deps().task_service.claim(security.calling_agent(router), agent_id, command)
    leases = [Lease.model_validate(e, from_attributes=True) for e in claimed.executions]
    return Claimed(executions=leases, renewed=claimed.renewed, cancel=claimed.cancel)


@router.post("/executions/<execution_id>/result", summary="Report an attempt's result", **AGENT)
def report_result(execution_id: ExecutionIdPath, result: Annotated[ResultReport, Body()]) -> ResultRecorded:
    recorded = get_deps().task_service.report(security.calling_agent(router), execution_id, result)
    return ResultRecorded(execution_id=execution_id, attempt=result.attempt, status=recorded.status)


@router.get("/executions/<execution_id>", summary="An agent's own execution", **AGENT)
def get_execution(execution_id: ExecutionIdPath) -> ExecutionDetail:
    execution = get_deps().task_service.execution_for(security.calling_agent(router), execution_id)
    return ExecutionDetail.model_validate(execution, from_attributes=True)
