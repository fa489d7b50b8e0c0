"""Agent heartbeat: liveness in, what is waiting out."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from fleetlink.api import heartbeat_replay, security
from fleetlink.api.deps import get_deps
from fleetlink.api.params import AgentIdPath
from fleetlink.contract.agents import HeartbeatAck
from fleetlink.core.heartbeat import Heartbeat

router = Router()


@router.post(
    "/agents/<agent_id>/heartbeat",
    summary="Heartbeat (signed by the agent)",
    tags=["agent"],
    # a `seq:<n>` nonce is checked by the presence update instead of spent as a nonce item
    middlewares=[heartbeat_replay.accepts_sequence, security.signed_agent],
    security=[{"agentSignature": []}],
)
def heartbeat(agent_id: AgentIdPath, command: Annotated[Heartbeat, Body()]) -> HeartbeatAck:
    result = get_deps().heartbeat.heartbeat(
        security.calling_view(router),
        agent_id,
        command,
        sequence=heartbeat_replay.verified_sequence(router),
    )
    return HeartbeatAck.of(result)
