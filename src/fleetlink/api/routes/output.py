"""Output of executions: agents append live output; operators follow it and read every attempt."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.api.params import RouteAccess
from fleetlink.core.ids import IdPrefix, id_pattern
from fleetlink.core.tasks.output import (
    MAX_SEQ,
    READ_LIMIT,
    AppendOutput,
    Attempt,
    AttemptList,
    ChunkAck,
    OutputPage,
    current_attempt,
)

router = Router()
AGENT = security.agent_access(["agent"])
OPERATOR: RouteAccess = {
    "middlewares": [security.operator],
    "security": [{"operator": []}],
    "tags": ["tasks"],
}
ExecutionIdPath = Annotated[str, Path(pattern=id_pattern(IdPrefix.EXECUTION), description="exe_ id")]


@router.post(
    "/executions/<execution_id>/output",
    summary="Append live output of a running attempt (chunk seq 1, 2, ... in order; a resend is a duplicate)",
    **AGENT,
)
def append_output(execution_id: ExecutionIdPath, command: Annotated[AppendOutput, Body()]) -> ChunkAck:
    return get_deps().output_service.append(security.calling_agent(router), execution_id, command)


@router.get(
    "/executions/<execution_id>/output",
    summary="An attempt's live output after a cursor (follow with ?after=next_after)",
    **OPERATOR,
)
def read_output(
    execution_id: ExecutionIdPath,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="The last chunk seen (0: from the start)")] = 0,
    attempt: Annotated[int | None, Query(ge=1, le=1000, description="Default: the current one")] = None,
    limit: Annotated[int, Query(ge=1, le=READ_LIMIT)] = READ_LIMIT,
) -> OutputPage:
    return get_deps().output_service.read(execution_id, attempt, after, limit)


@router.get("/executions/<execution_id>/attempts", summary="Every attempt of an execution", **OPERATOR)
def list_attempts(execution_id: ExecutionIdPath) -> AttemptList:
    execution, ended = get_deps().output_service.attempts(execution_id)
    attempts = list(ended)
    if execution.attempt not in {found.attempt for found in ended}:
        attempts.append(current_attempt(execution))
    return AttemptList(
        execution_id=execution_id, status=execution.status, attempt=execution.attempt, attempts=attempts
    )


@router.get(
    "/executions/<execution_id>/attempts/<attempt>", summary="One attempt of an execution", **OPERATOR
)
def get_attempt(execution_id: ExecutionIdPath, attempt: Annotated[int, Path(ge=1, le=1000)]) -> Attempt:
    return get_deps().output_service.attempt(execution_id, attempt)
