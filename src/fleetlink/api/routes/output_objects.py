"""Complete output in the output bucket: agents get upload links for their reported attempt's
objects, operators a download link (``fleetlink tasks output``)."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.api.routes.output import AGENT, ExecutionIdPath
from fleetlink.core.roles import Role
from fleetlink.core.tasks.output_objects import OutputDownload, OutputUploads, RequestUploads

router = Router()
VIEWER = security.operator_access(Role.VIEWER, ["tasks"])


@router.post(
    "/executions/<execution_id>/output-uploads",
    summary="Presigned PUTs for the complete output objects a reported attempt declared "
    "(409: not reported yet, declared none, or ended over 24 h ago)",
    **AGENT,
)
def request_output_uploads(
    execution_id: ExecutionIdPath, command: Annotated[RequestUploads, Body()]
) -> OutputUploads:
    return get_deps().output_objects.uploads(security.calling_agent(router), execution_id, command)


@router.get(
    "/executions/<execution_id>/output-objects/<stream>",
    summary="A presigned GET of an attempt's complete stdout or stderr (gzip; 404 while not uploaded)",
    **VIEWER,
)
def get_output_object(
    execution_id: ExecutionIdPath,
    stream: Annotated[Literal["stdout", "stderr"], Path(description="stdout or stderr")],
    attempt: Annotated[int | None, Query(ge=1, le=1000, description="Default: the last that ended")] = None,
) -> OutputDownload:
    return get_deps().output_objects.download(execution_id, stream, attempt)
