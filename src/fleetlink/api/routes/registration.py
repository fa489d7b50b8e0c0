"""Registration and identity: tokens (operator), registration (agents), key rotation and recovery."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.api.params import AgentIdPath
from fleetlink.contract.agents import (
    KeyRotated,
    RecoveryTokenCreated,
    Registered,
    TokenCreated,
    TokenList,
    TokenSummary,
)
from fleetlink.core.agents.commands import MintRecoveryToken, MintRegistrationToken, RegisterAgent, RotateKey
from fleetlink.core.agents.model import Agent
from fleetlink.core.copying import copied
from fleetlink.core.errors import TokenUnusable, Unauthenticated
from fleetlink.core.ids import IdPrefix, id_pattern
from fleetlink.core.roles import Role

router = Router()
VIEWER = security.operator_access(Role.VIEWER, ["registration"])
ADMIN = security.operator_access(Role.ADMIN, ["registration"])
NO_STORE = {"Cache-Control": "no-store"}
TokenIdPath = Annotated[str, Path(pattern=id_pattern(IdPrefix.TOKEN), description="tok_ id")]


@router.post(
    "/registration-tokens", summary="Mint a registration token (shown once)", status_code=201, **ADMIN
)
def mint_registration_token(command: Annotated[MintRegistrationToken, Body()]) -> Response[TokenCreated]:
    minted = get_deps().registration.mint_token(command, security.operator_actor(router))
    body = copied(TokenCreated, minted.record, token=minted.token)
    return Response(201, "application/json", body, headers=NO_STORE)


@router.get(
    "/registration-tokens",
    summary="List registration and recovery tokens (never their secrets), newest first",
    **VIEWER,
)
def list_registration_tokens(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> TokenList:
    page = get_deps().registration.list_tokens(limit=limit, cursor=cursor)
    return TokenList(items=[TokenSummary.of(token) for token in page.items], cursor=page.cursor)


@router.delete(
    "/registration-tokens/<token_id>",
    summary="Revoke a token (idempotent)",
    description="A registration that has not committed by the time the revocation commits fails: the "
    "use of a token is re-checked inside the registration's transaction.",
    **ADMIN,
)
def revoke_registration_token(token_id: TokenIdPath) -> TokenSummary:
    return TokenSummary.of(get_deps().registration.revoke_token(token_id, security.operator_actor(router)))


@router.post(
    "/agents/register",
    summary="Register a new agent, or re-register a known one",
    description="New agent: `Authorization: Bearer <registration token>`, signed by the new key with "
    "keyid = the fingerprint; always a new agent id. The token's tags win: a requested tag the token "
    "sets to another value is a 422 `token-tag-conflict` naming it. With a recovery token, the new key "
    "takes over the token's agent id (`event: recover`). Re-registration (restart, hardware change): "
    "signed by the agent's current key with keyid = the agent id; no token; same id. Every "
    "authentication failure is the same generic 401 (`unauthenticated`: a missing, unknown or malformed "
    "token, a bad signature), except for the holder of a genuine token that can no longer be used, "
    "who is told why: 401 `registration-token-expired`, `registration-token-used-up` or "
    "`registration-token-revoked` (problem types `urn:fleetlink:problem:<code>`).",
    status_code=201,
    tags=["registration"],
    middlewares=[security.registering_agent],
    security=[{"registrationToken": [], "agentSignature": []}, {"agentSignature": []}],
)
def register_agent(command: Annotated[RegisterAgent, Body()]) -> Response[Registered]:
    deps = get_deps()
    caller = security.registering_caller(router)
    if isinstance(caller, Agent):
        outcome = deps.registration.re_register(caller, command)
    else:
        security.verify_new_key(router, command)
        try:
            outcome = deps.registration.register(command, caller)
        except TokenUnusable as error:  # spent or revoked meanwhile; the holder proved it has the secret
            security.refused(error, security.http_event(router))
            raise
        except Unauthenticated as error:
            raise security.refused(error, security.http_event(router)) from None
    body = Registered(
        agent_id=outcome.agent_id,
        event=outcome.event,
        similarity_score=outcome.similarity_score,
        heartbeat_interval_s=deps.settings.heartbeat_interval_s,
        server_time=deps.clock.now_ms(),
        name=outcome.name,
        warnings=[
            f"agent {other} on this machine is also named {outcome.name!r}: give this one a name of its "
            "own (--name), or operators must target it by id"
            for other in outcome.same_name
        ],
    )
    return Response(201, "application/json", body)


@router.post(
    "/agents/<agent_id>/keys",
    summary="Rotate the agent's signing key (signed by the current key, with proof of the new one)",
    description="Body `{public_key, key_alg, created, proof}`: `proof` is the new key's signature over "
    "`fleetlink-key-proof-v1\\n<agent_id>\\n<key_alg>\\n<hex SHA-256 of the new key's DER "
    "SubjectPublicKeyInfo>\\n<created>` (base64url, no padding; `created` within 300 s). The id, "
    "tags and work stay; later requests must be signed by the new key.",
    tags=["agent"],
    middlewares=[security.signed_agent],
    security=[{"agentSignature": []}],
)
def rotate_key(agent_id: AgentIdPath, command: Annotated[RotateKey, Body()]) -> KeyRotated:
    from fleetlink.auth.key_proof import verify_key_proof
    from fleetlink.auth.keys import load_public_key

    deps = get_deps()
    verify_key_proof(
        load_public_key(command.public_key, command.key_alg),
        agent_id,
        command.key_alg,
        command.created,
        command.proof,
        now_s=deps.clock.now_ms() // 1000,
        max_skew_s=deps.settings.signature_max_skew_s,
    )
    agent = deps.recovery.rotate_key(security.calling_agent(router), agent_id, command)
    return KeyRotated(
        agent_id=agent.agent_id,
        key_alg=agent.key_alg,
        public_key=agent.public_key,
        updated_at=agent.updated_at,
    )


@router.post(
    "/agents/<agent_id>/recovery-token",
    summary="Mint a single-use, short-lived token with which a new key takes over this agent id",
    status_code=201,
    **ADMIN,
)
def mint_recovery_token(
    agent_id: AgentIdPath, command: Annotated[MintRecoveryToken | None, Body()] = None
) -> Response[RecoveryTokenCreated]:
    minted = get_deps().recovery.mint_recovery_token(
        agent_id, command or MintRecoveryToken(), security.operator_actor(router)
    )
    body = RecoveryTokenCreated(
        token=minted.token,
        token_id=minted.record.token_id,
        agent_id=agent_id,
        expires_at=minted.record.expires_at,
    )
    return Response(201, "application/json", body, headers=NO_STORE)
