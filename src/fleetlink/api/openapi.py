"""What the OpenAPI document says about the API as a whole: title, security schemes."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import (
    APIKey,
    APIKeyIn,
    HTTPBearer,
)

import fleetlink
from fleetlink.contract.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE


def describe() -> dict[str, Any]:
    return {
        "title": "fleetlink",
        "version": fleetlink.__version__,
        "summary": "Serverless control plane for fleets of agents",
        "description": "Agents sign every request per RFC 9421 (HTTP Message Signatures); operators use IAM "
        "(SigV4) in AWS or a bearer token on the local dev stack. Errors are RFC 9457 problem documents.",
        "security_schemes": {
            "agentSignature": APIKey(
                name="Signature",
                **{"in": APIKeyIn.header},
                description="RFC 9421 Signature + Signature-Input (keyid = agent id; ed25519 or "
                "rsa-pss-sha512; covers @method, @target-uri and content-digest)",
            ),
            "registrationToken": HTTPBearer(description="A registration token minted by an operator"),
            "operator": HTTPBearer(description="Operator token (dev stack); IAM SigV4 on a deployed stack"),
        },
    }


# --- the problems each route can answer ---------------------------------------------------------

PROBLEM_REF = "#/components/schemas/Problem"
#: RFC 9457 problem details, as ``fleetlink.api.problems.problem`` writes them.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": f"{PROBLEM_TYPE_BASE}<code>"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Where and why a request failed validation (never the value)",
            "items": {"type": "object"},
        },
    },
}
#: What each status means on every route that can answer it.
PROBLEM_DESCRIPTIONS = {
    400: "Malformed request: not JSON, past a JSON parser limit (nesting, an integer of over 4300 digits, "
    "an unpaired surrogate escape: json-limit), or a bad cursor or filter",
    401: "Not authenticated: missing or invalid signature or token",
    403: "Authenticated, but not allowed (revoked, or another agent's resource)",
    404: "No such resource (named in the path or the body)",
    409: "Conflicts with the resource's current state",
    413: "Body larger than the function accepts",
    415: "Body is not application/json",
    422: "Well-formed, but does not match the schema",
    429: "Throttled: retry after Retry-After seconds",
    503: "Temporarily unavailable: retry after Retry-After seconds",
}
#: A registration token's own refusals: the holder of a genuine secret is told why it no longer works.
TOKEN_PROBLEM_CODES = (
    "registration-token-expired",
    "registration-token-used-up",
    "registration-token-revoked",
)
TOKEN_401_DESCRIPTION = (
    "Not authenticated. One generic problem (`urn:fleetlink:problem:unauthenticated`) for a missing, "
    "unknown or malformed token or a bad signature; a genuine token that can no longer be used is "
    "named with its reason: " + ", ".join(f"`urn:fleetlink:problem:{code}`" for code in TOKEN_PROBLEM_CODES)
)
#: Whoever may call a route can also be refused: by security scheme name.
ACCESS_STATUSES: dict[str, tuple[int, ...]] = {
    "agentSignature": (401, 403),
    "registrationToken": (401, 403),
    "operator": (401, 403),
}
#: Every route: API Gateway throttles (429) and the store can be briefly unavailable (503).
ALWAYS = (429, 503)
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}


def route_problem_statuses(method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses a route can answer, from its access kind, its inputs and its method."""
    statuses = set(ALWAYS)
    secured = [name for requirement in operation.get("security", []) for name in requirement]
    for name in secured:
        statuses.update(ACCESS_STATUSES[name])
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    if parameters or has_body:
        statuses |= {400, 422}
    if has_body or any(parameter.get("in") == "path" for parameter in parameters):
        statuses.add(404)  # the path, or the body, names something that may not exist
    if has_body:
        statuses |= {413, 415}
    if secured and method.lower() != "get":
        statuses.add(409)
    return statuses


def _described(status: int, operation: dict[str, Any]) -> str:
    """What a status means on this route; an operator route's 403 names the role it needs."""
    roles = [
        (requirement["operator"] or ["admin"])[0]
        for requirement in operation.get("security", [])
        if "operator" in requirement
    ]
    if status == 403 and roles:
        return (
            f"The caller's role may not call this route: it needs the {roles[0]} role or more "
            "(problem type urn:fleetlink:problem:role-required, with member required_role)"
        )
    return PROBLEM_DESCRIPTIONS[status]


def document_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Every route's error statuses, each an RFC 9457 problem under ``application/problem+json``."""
    document.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for methods in document.get("paths", {}).values():
        for method, operation in methods.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # Powertools' own, on every route; ours where input is validated
            if "204" in responses:  # Powertools gives it the handler's (None) return as a JSON body
                responses["204"] = {"description": "Done; no content"}
            for status in sorted(route_problem_statuses(method, operation)):
                token_route = any("registrationToken" in r for r in operation.get("security", []))
                response: dict[str, Any] = {
                    "description": TOKEN_401_DESCRIPTION
                    if status == 401 and token_route
                    else _described(status, operation),
                    "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
                }
                if status in ALWAYS:
                    response["headers"] = _RETRY_AFTER
                responses[str(status)] = response
    return document
