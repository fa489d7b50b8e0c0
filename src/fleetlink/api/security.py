"""Who is calling: signed agents (RFC 9421), registering agents, operators.

Routes declare their caller with a middleware (``signed_agent``, ``registering_agent``,
``operator``). The resolver runs that check before Powertools validates (and so parses) the body:
an unauthenticated request costs a header parse and gets a 401. On agent routes every
authentication failure is one generic 401 problem; why it failed goes to the logs and a metric.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from fleetlink.api import heartbeat_replay
from fleetlink.api.deps import get_deps
from fleetlink.api.heartbeat_replay import sequence_replaces_nonce
from fleetlink.api.params import RouteAccess
from fleetlink.api.settings import DEFAULT_OPERATOR_NAME, OperatorAuth, Settings
from fleetlink.core.agents.model import Agent, RegistrationToken
from fleetlink.core.agents.ports import AgentView, NonceScope
from fleetlink.core.audit import RequestOrigin, set_request_origin
from fleetlink.core.entities import AgentState, KeyAlg
from fleetlink.core.errors import Forbidden, TokenUnusable, Unauthenticated
from fleetlink.core.ids import IdPrefix, is_id
from fleetlink.core.roles import Role

if TYPE_CHECKING:
    from fleetlink.auth.signatures import IncomingRequest, SignatureParams
    from fleetlink.core.agents.commands import RegisterAgent

# fleetlink.auth (cryptography, http_message_signatures) is imported where a signature is
# checked, so functions that never check one (operator) do not load it on a cold start.

NextMiddleware = Callable[[BaseRouter], Response[Any]]

#: Where the authenticated caller is kept in the resolver's context.
CALLER_AGENT = "agent"
CALLER_VIEW = "agent_view"
CALLER_OPERATOR = "operator"
CALLER_ROLE = "operator_role"
CALLER_TOKEN = "registration_token"  # noqa: S105 - a context key
AUTHENTICATED = "authenticated"
#: Where the entry point (``fleetlink.api.app``) puts a callable that returns the API's document.
API_DOCUMENT = "api_document"

#: The one answer to every failed authentication on agent routes.
GENERIC_401_DETAIL = "the request could not be authenticated"
METRICS_NAMESPACE = "fleetlink"

logger = Logger(service="fleetlink")


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


def refused(error: Unauthenticated, event: APIGatewayProxyEventV2) -> Unauthenticated:
    """The generic 401 for a failed authentication; the reason is logged and counted, never returned."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    logger.info(
        "authentication refused",
        extra={"reason": error.code, "detail": error.detail, "path": event.raw_path},
    )
    with single_metric(
        name="AuthenticationRefused", unit=MetricUnit.Count, value=1, namespace=METRICS_NAMESPACE
    ) as metric:
        metric.add_dimension(name="reason", value=error.code)
    return Unauthenticated(GENERIC_401_DETAIL)


def verify_signed(
    request: IncomingRequest,
    public_key_pem: str,
    key_alg: KeyAlg,
    scope: NonceScope = NonceScope.AGENT,
    app: BaseRouter | None = None,
) -> SignatureParams:
    """Verify the signature, then spend its nonce in ``scope`` (a replay fails here), unless ``app``'s
    route checks a heartbeat sequence in its own write (``fleetlink.api.heartbeat_replay``)."""
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
    if app is not None and sequence_replaces_nonce(app, params):
        return params
    if not deps.nonces.remember(
        scope, params.key_id, params.nonce, now_ms=now_ms, lifetime_s=deps.settings.nonce_lifetime_s
    ):
        raise Unauthenticated("this signature's nonce was already used", code="signature-replayed")
    return params


def _verified_agent(request: IncomingRequest, app: BaseRouter | None = None) -> AgentView:
    """The agent (with its presence) whose current key signed the request (keyid = agent id; read
    consistently)."""
    from fleetlink.auth.signatures import read_signature_params

    key_id = read_signature_params(request).key_id
    view = get_deps().agents.get_view(key_id, consistent=True) if is_id(key_id, IdPrefix.AGENT) else None
    if view is None:
        raise Unauthenticated("the signature's keyid is not a registered agent", code="unknown-key")
    verify_signed(request, view.agent.public_key, view.agent.key_alg, app=app)
    return view


def _admit(app: BaseRouter, view: AgentView) -> None:
    if view.agent.state is AgentState.REVOKED:
        raise Forbidden("this agent is revoked", code="agent-revoked")
    app.append_context(**{CALLER_AGENT: view.agent, CALLER_VIEW: view})


def authenticate_agent(app: BaseRouter) -> None:
    """A registered, active agent signed the request with its current key."""
    event = http_event(app)
    try:
        view = _verified_agent(incoming_request(event), app)
    except Unauthenticated as error:
        raise refused(error, event) from None
    _admit(app, view)


def calling_view(app: BaseRouter) -> AgentView:
    """The calling agent with its presence, as read to check the signature."""
    view: AgentView = app.context[CALLER_VIEW]
    return view


def authenticate_registration(app: BaseRouter) -> None:
    """Before the body is read: keyid = an agent id signed by its current key (re-registration), or
    else a valid registration or recovery token (the new key's signature is checked with the body)."""
    from fleetlink.auth.signatures import read_signature_params

    event = http_event(app)
    request = incoming_request(event)
    try:
        if is_id(read_signature_params(request).key_id, IdPrefix.AGENT):
            view = _verified_agent(request)
        else:
            app.append_context(**{CALLER_TOKEN: get_deps().registration.redeem(bearer_token(event))})
            return
    except TokenUnusable as error:  # a genuine token's holder learns why it no longer works
        refused(error, event)
        raise
    except Unauthenticated as error:
        raise refused(error, event) from None
    _admit(app, view)


def _operator_identity(settings: Settings, event: APIGatewayProxyEventV2) -> tuple[str, Role | None]:
    """(actor, role) of the calling operator. In AWS the IAM principal's ARN, and no role here: API
    Gateway already allowed the call (the managed role policies); locally a named token's."""
    if settings.operator_auth is OperatorAuth.IAM:
        iam = event.request_context.authorizer.iam if event.request_context.authorizer else None
        actor = iam.user_arn if iam else None
        if not actor:
            raise Unauthenticated(
                "operator routes need IAM (SigV4) authorization", code="operator-auth-missing"
            )
        return actor, None
    token = bearer_token(event)
    digest = hashlib.sha256(token.encode()).hexdigest() if token else ""
    found: tuple[str, Role] | None = None
    if settings.operator_token_sha256 and hmac.compare_digest(digest, settings.operator_token_sha256):
        found = (DEFAULT_OPERATOR_NAME, Role.ADMIN)
    for named in settings.operator_tokens:  # every one compared: the time says nothing of which
        if hmac.compare_digest(digest, named.sha256) and found is None:
            found = (named.name, named.role)
    if not token or found is None:
        raise Unauthenticated("a valid operator token is required", code="operator-token-invalid")
    return found


def authenticate_operator(app: BaseRouter, needed: Role = Role.ADMIN) -> None:
    """An operator holding ``needed`` (or more). In AWS, API Gateway checked IAM; locally, the token."""
    event = http_event(app)
    actor, role = _operator_identity(get_deps().settings, event)
    http = event.request_context.http
    set_request_origin(
        RequestOrigin(actor=actor, source_ip=http.source_ip or "", user_agent=http.user_agent or "")
    )
    if role is not None and not role.allows(needed):
        if http.method.upper() not in ("GET", "HEAD"):
            _audit_refusal(actor, http.method.upper(), event.raw_path, needed)
        raise Forbidden(
            f"this needs the {needed} role; {actor} holds {role}",
            code="role-required",
            required_role=needed.value,
        )
    app.append_context(**{CALLER_OPERATOR: actor, CALLER_ROLE: role})


_RESOURCE_ID = re.compile(r"^(agt|tsk|tun|tok|exe)_[0-9A-HJKMNP-TV-Z]{26}$")


def _audit_refusal(actor: str, method: str, path: str, needed: Role) -> None:
    """A write refused for its role leaves an entry marked failed (nothing changed, so no transaction)."""
    from fleetlink.core.audit import AuditRecord

    ids = [segment for segment in path.split("/") if _RESOURCE_ID.match(segment)]
    deps = get_deps()
    now = deps.clock.now_ms()
    entry = AuditRecord.of(
        actor,
        "request.refused",
        ids[-1] if ids else path[:256],
        now,
        method=method,
        path=path[:256],
        required_role=needed.value,
    ).model_copy(update={"success": False})
    try:
        deps.audit_log.record(entry)
    except Exception as error:  # the refusal stands (a 403) even when its entry cannot be written now
        logger.warning("refused write not recorded in the audit log", extra={"error": type(error).__name__})


def _as(role: Role) -> Callable[[BaseRouter], None]:
    def authenticate(app: BaseRouter) -> None:
        authenticate_operator(app, role)

    authenticate.__doc__ = f"An operator holding the {role} role or more."
    return authenticate


def _gate(authenticate: Callable[[BaseRouter], None]) -> Callable[..., Response[Any]]:
    def middleware(app: BaseRouter, next_middleware: NextMiddleware) -> Response[Any]:
        if not app.context.get(AUTHENTICATED):
            authenticate(app)
        return next_middleware(app)

    middleware.__doc__ = f"Route middleware: {authenticate.__doc__}"
    return middleware


#: Route middlewares that declare (and, run late, enforce) who may call a route.
signed_agent = _gate(authenticate_agent)
registering_agent = _gate(authenticate_registration)
#: One per role; ``operator`` (no role named) is the most guarded, admin.
OPERATOR_GATES: dict[Role, Callable[[BaseRouter], None]] = {role: _as(role) for role in Role}
ROLE_MIDDLEWARES = {role: _gate(authenticate) for role, authenticate in OPERATOR_GATES.items()}
operator = ROLE_MIDDLEWARES[Role.ADMIN]
AUTHENTICATORS: dict[Callable[..., Response[Any]], Callable[[BaseRouter], None]] = {
    signed_agent: authenticate_agent,
    registering_agent: authenticate_registration,
    **{ROLE_MIDDLEWARES[role]: OPERATOR_GATES[role] for role in Role},
}
#: The OpenAPI security scheme of operator routes; its requirement lists the least role (OpenAPI 3.1
#: "role names" of a non-OAuth scheme).
OPERATOR_SCHEME = "operator"
#: OpenAPI extension of a route that changes nothing though its method is not GET (a query by POST).
READS_ONLY_EXTENSION = "x-fleetlink-reads-only"
READS_ONLY = {READS_ONLY_EXTENSION: True}


def operator_access(role: Role, tags: list[str]) -> RouteAccess:
    """Route decorator arguments of an operator route that needs ``role`` (or more): the gate, and
    the role in the OpenAPI security requirement, from which IAM policies and the console derive."""
    return {
        "middlewares": [ROLE_MIDDLEWARES[role]],
        "security": [{OPERATOR_SCHEME: [role.value]}],
        "tags": tags,
    }


def agent_access(tags: list[str]) -> RouteAccess:
    """Route decorator arguments of a route an agent calls, signed by its key (RFC 9421)."""
    return {"middlewares": [signed_agent], "security": [{"agentSignature": []}], "tags": tags}


#: (METHOD, OpenAPI path) of a route.
RouteKey = tuple[str, str]


def declared_roles(document: Mapping[str, Any]) -> dict[RouteKey, Role]:
    """The least role each operator route needs, read back from the OpenAPI document's security
    requirements (``operator_access`` writes them; one naming no role is admin's)."""
    roles: dict[RouteKey, Role] = {}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for requirement in operation.get("security") or ():
                if OPERATOR_SCHEME in requirement:
                    named = requirement[OPERATOR_SCHEME]
                    roles[(method.upper(), path)] = Role(named[0]) if named else Role.ADMIN
    return roles


def api_document(app: BaseRouter) -> dict[str, Any]:
    """The API's whole OpenAPI document, as the entry point hands it to routes (``API_DOCUMENT``)."""
    document: Callable[[], dict[str, Any]] = app.context[API_DOCUMENT]
    return document()


def authenticate_route(app: BaseRouter, route_middlewares: list[Callable[..., Any]]) -> None:
    """Run the route's authentication now (before its body is read); its middleware then passes."""
    for middleware in route_middlewares:
        if middleware is heartbeat_replay.accepts_sequence:
            heartbeat_replay.mark_accepts_sequence(app)
        authenticate = AUTHENTICATORS.get(middleware)
        if authenticate is not None:
            authenticate(app)
            app.append_context(**{AUTHENTICATED: True})


def calling_agent(app: BaseRouter) -> Agent:
    agent: Agent = app.context[CALLER_AGENT]
    return agent


def registering_caller(app: BaseRouter) -> Agent | RegistrationToken:
    """Who is registering: a known agent (by its current key) or the holder of a redeemed token."""
    caller: Agent | RegistrationToken = app.context.get(CALLER_AGENT) or app.context[CALLER_TOKEN]
    return caller


def verify_new_key(app: BaseRouter, command: RegisterAgent) -> None:
    """A new registration is signed by the key it registers, with keyid = the fingerprint."""
    from fleetlink.auth.signatures import read_signature_params

    event = http_event(app)
    request = incoming_request(event)
    try:
        if read_signature_params(request).key_id != command.fingerprint:
            raise Unauthenticated(
                "a registration's keyid must be its fingerprint", code="signature-keyid-mismatch"
            )
        verify_signed(request, command.public_key, command.key_alg, NonceScope.REGISTRATION)
    except Unauthenticated as error:
        raise refused(error, event) from None


def bearer_token(event: APIGatewayProxyEventV2) -> str | None:
    value = (event.headers or {}).get("authorization") or (event.headers or {}).get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def operator_actor(app: BaseRouter) -> str:
    actor: str = app.context[CALLER_OPERATOR]
    return actor


def operator_role(app: BaseRouter) -> Role | None:
    """The caller's role on the dev stack; None in AWS (IAM decided at the gateway)."""
    role: Role | None = app.context.get(CALLER_ROLE)
    return role
