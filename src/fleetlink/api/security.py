"""Who is calling: signed agents (RFC 9421), registering agents, operators."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from fleetlink.api.deps import get_deps
from fleetlink.api.settings import OperatorAuth
from fleetlink.core.agents.model import Agent
from fleetlink.core.agents.ports import AgentView
from fleetlink.core.entities import AgentState, KeyAlg
from fleetlink.core.errors import Forbidden, Unauthenticated

if TYPE_CHECKING:
    from fleetlink.auth.signatures import IncomingRequest, SignatureParams

# fleetlink.auth (cryptography, http_message_signatures) is imported where a signature is
# checked, so functions that never check one (operator) do not load it on a cold start.

NextMiddleware = Callable[[BaseRouter], Response[Any]]

#: Where the authenticated caller is kept in the resolver's context.
CALLER_AGENT = "agent"
CALLER_VIEW = "agent_view"
CALLER_OPERATOR = "operator"


def http_event(router: BaseRouter) -> APIGatewayProxyEventV2:
    """The current event, as the HTTP API resolver parsed it."""
    return cast(APIGatewayProxyEventV2, router.current_event)


def raw_body(event: APIGatewayProxyEventV2) -> bytes:
    body = event.body or ""
    return base64.b64decode(body) if event.is_base64_encoded else body.encode()


def incoming_request(event: APIGatewayProxyEventV2) -> IncomingRequest:
    """The request as the client signed it: scheme and host as it addressed us."""
    from fleetlink.auth.signatures import IncomingRequest

    headers = {name.lower(): value for name, value in (event.headers or {}).items()}
    scheme = headers.get("x-forwarded-proto", "https")
    host = event.request_context.domain_name or headers.get("host", "")
    query = f"?{event.raw_query_string}" if event.raw_query_string else ""
    return IncomingRequest(
        method=event.request_context.http.method.upper(),
        target_uri=f"{scheme}://{host}{event.raw_path}{query}",
        headers=headers,
        body=raw_body(event),
    )


@lru_cache(maxsize=1024)
def _public_key(pem: str, alg: KeyAlg) -> Any:
    from fleetlink.auth.keys import load_public_key

    return load_public_key(pem, alg)


def verify_signed(request: IncomingRequest, public_key_pem: str, key_alg: KeyAlg) -> SignatureParams:
    """Verify the signature, then spend its nonce (a replay fails here)."""
    from fleetlink.auth.signatures import verify_request

    deps = get_deps()
    now_ms = deps.clock.now_ms()
    params = verify_request(
        request,
        _public_key(public_key_pem, key_alg),
        key_alg,
        now_s=now_ms // 1000,
        max_skew_s=deps.settings.signature_max_skew_s,
    )
    if not deps.nonces.remember(
        params.key_id, params.nonce, now_ms=now_ms, lifetime_s=deps.settings.nonce_lifetime_s
    ):
        raise Unauthenticated("this signature's nonce was already used", code="signature-replayed")
    return params


def signed_agent(app: BaseRouter, next_middleware: NextMiddleware) -> Response[Any]:
    """Middleware: the request is signed by a registered, active agent (keyid = agent id)."""
    from fleetlink.auth.signatures import read_signature_params

    request = incoming_request(http_event(app))
    key_id = read_signature_params(request).key_id
    view = get_deps().agents.get_view(key_id)
    if view is None:
        raise Unauthenticated("the signature's keyid is not a registered agent", code="unknown-key")
    agent = view.agent
    verify_signed(request, agent.public_key, agent.key_alg)
    if agent.state is AgentState.REVOKED:
        raise Forbidden("this agent is revoked", code="agent-revoked")
    app.append_context(**{CALLER_AGENT: agent, CALLER_VIEW: view})
    return next_middleware(app)


def calling_agent(app: BaseRouter) -> Agent:
    agent: Agent = app.context[CALLER_AGENT]
    return agent


def calling_view(app: BaseRouter) -> AgentView:
    """The calling agent with its presence, as read to check the signature."""
    view: AgentView = app.context[CALLER_VIEW]
    return view


def verify_registration(app: BaseRouter, fingerprint: str, public_key_pem: str, key_alg: KeyAlg) -> None:
    """A registration is signed by the key it registers, with keyid = the fingerprint."""
    from fleetlink.auth.signatures import read_signature_params

    request = incoming_request(http_event(app))
    if read_signature_params(request).key_id != fingerprint:
        raise Unauthenticated(
            "a registration's keyid must be its fingerprint", code="signature-keyid-mismatch"
        )
    verify_signed(request, public_key_pem, key_alg)


def bearer_token(event: APIGatewayProxyEventV2) -> str | None:
    value = (event.headers or {}).get("authorization") or (event.headers or {}).get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def operator(app: BaseRouter, next_middleware: NextMiddleware) -> Response[Any]:
    """Middleware: an operator. In AWS, API Gateway checked IAM; locally, the operator token."""
    settings = get_deps().settings
    event = http_event(app)
    if settings.operator_auth is OperatorAuth.IAM:
        iam = event.request_context.authorizer.iam if event.request_context.authorizer else None
        actor = iam.user_arn if iam else None
        if not actor:
            raise Unauthenticated(
                "operator routes need IAM (SigV4) authorization", code="operator-auth-missing"
            )
    else:
        token = bearer_token(event)
        expected = settings.operator_token_sha256
        if (
            not token
            or not expected
            or not hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), expected)
        ):
            raise Unauthenticated("a valid operator token is required", code="operator-token-invalid")
        actor = "operator-token"
    app.append_context(**{CALLER_OPERATOR: actor})
    return next_middleware(app)


def operator_actor(app: BaseRouter) -> str:
    actor: str = app.context[CALLER_OPERATOR]
    return actor
