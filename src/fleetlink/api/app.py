"""One resolver per Lambda function, built from its routers; the Lambda entry around it."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from aws_lambda_powertools.event_handler.types import EventHandlerInstance
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from fleetlink.api import security
from fleetlink.api.problems import install_problem_handlers
from fleetlink.api.settings import LARGE_BODY_ROUTES, MAX_BODY_BYTES
from fleetlink.core.errors import PayloadTooLarge

API_PREFIX = "/v1"

#: The route groups each HTTP Lambda serves; the dev stack and the CDK app wire routes from this.
FUNCTION_ROUTERS: dict[str, tuple[str, ...]] = {
    "registration": ("fleetlink.api.routes.registration",),
    "heartbeat": ("fleetlink.api.routes.heartbeat",),
    "tasks": ("fleetlink.api.routes.tasks", "fleetlink.api.routes.executions"),
    "operator": ("fleetlink.api.routes.operator", "fleetlink.api.routes.health"),
}

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]

logger = Logger(service="fleetlink")


@cache
def resolver_for(function_name: str) -> APIGatewayHttpResolver:
    """The function's resolver; one per process, since a Powertools router binds to one resolver."""
    app = APIGatewayHttpResolver(enable_validation=True)
    install_problem_handlers(app)
    # Powertools puts its request validation (which parses the body) first on every route; this
    # step takes its place and runs authentication and the body limit before it.
    app._request_validation_middleware = AuthenticateThenValidate()
    for module in FUNCTION_ROUTERS[function_name]:
        app.include_router(importlib.import_module(module).router, prefix=API_PREFIX)
    return app


def body_limit(path: str) -> int:
    return LARGE_BODY_ROUTES.get(path, MAX_BODY_BYTES)


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    return len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())


class AuthenticateThenValidate(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation (which parses the body), preceded by who is calling (headers
    only) and the body limit: an unauthenticated request is refused before its body is read."""

    def handler(self, app: EventHandlerInstance, next_middleware: NextMiddleware) -> Response[Any]:
        route = app.context.get("_route")  # the matched route, as Powertools records it
        security.authenticate_route(app, list(getattr(route, "middlewares", None) or ()))
        event = app.current_event.raw_event
        limit = body_limit(event.get("rawPath", ""))
        if _body_size(event) > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes")
        return super().handler(app, next_middleware)


def lambda_entry(function_name: str) -> LambdaHandler:
    """The Lambda handler of an HTTP function."""
    app = resolver_for(function_name)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return app.resolve(event, context)

    return handler


def _openapi(function_name: str) -> dict[str, Any]:
    from fleetlink.api.openapi import describe

    document: dict[str, Any] = json.loads(resolver_for(function_name).get_openapi_json_schema(**describe()))
    return document


@cache
def openapi_document() -> dict[str, Any]:
    """The whole API's OpenAPI 3.1 document: every function's routes, merged."""
    documents = [_openapi(name) for name in FUNCTION_ROUTERS]
    merged = documents[0]
    for document in documents[1:]:
        merged["paths"].update(document.get("paths", {}))
        schemas = document.get("components", {}).get("schemas", {})
        merged.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
    return merged


def route_table() -> list[tuple[str, str, str]]:
    """(function, METHOD, OpenAPI path) of every HTTP route, from the functions' own resolvers."""
    table = []
    for name in FUNCTION_ROUTERS:
        paths = _openapi(name).get("paths", {})
        table += [(name, method.upper(), path) for path, methods in paths.items() for method in methods]
    return sorted(table)
