"""Registration tokens (operator) and agent registration (signed by the new key)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.contract.agents import Registered, TokenCreated
from fleetlink.core.agents.commands import MintRegistrationToken, RegisterAgent

router = Router()


@router.post(
    "/registration-tokens",
    summary="Mint a registration token (shown once)",
    status_code=201,
    tags=["registration"],
    middlewares=[security.operator],
    security=[{"operator": []}],
)
def mint_registration_token(command: Annotated[MintRegistrationToken, Body()]) -> Response[TokenCreated]:
    minted = get_deps().registration.mint_token(command, security.operator_actor(router))
    record = minted.record
    body = TokenCreated(
        token=minted.token,
        token_id=record.token_id,
        expires_at=record.expires_at,
        max_uses=record.max_uses,
        tags=record.tags,
        name_prefix=record.name_prefix,
    )
    return Response(201, "application/json", body, headers={"Cache-Control": "no-store"})


@router.post(
    "/agents/register",
    summary="Register or re-register an agent",
    description="Bearer registration token, request signed by the new key with keyid = fingerprint. "
    "A known fingerprint keeps its agent id; a new key or dissimilar hardware needs a valid token.",
    status_code=201,
    tags=["registration"],
    security=[{"registrationToken": [], "agentSignature": []}],
)
def register_agent(command: Annotated[RegisterAgent, Body()]) -> Response[Registered]:
    security.verify_registration(router, command.fingerprint, command.public_key, command.key_alg)
    deps = get_deps()
    outcome = deps.registration.register(command, security.bearer_token(security.http_event(router)))
    body = Registered(
        agent_id=outcome.agent_id,
        event=outcome.event,
        similarity_score=outcome.similarity_score,
        heartbeat_interval_s=deps.settings.heartbeat_interval_s,
        server_time=deps.clock.now_ms(),
    )
    return Response(201, "application/json", body)
