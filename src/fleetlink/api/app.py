"""One resolver per HTTP function, built from its registry entry's routers; the Lambda entry around it."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.types import EventHandlerInstance
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from fleetlink.api import security
from fleetlink.api.bodies import JsonBodyValidation
from fleetlink.api.functions import API_PREFIX, function_spec, http_functions
from fleetlink.api.problems import install_problem_handlers
from fleetlink.api.security_headers import add_security_headers
from fleetlink.core.errors import PayloadTooLarge

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]

logger = Logger(service="fleetlink")


@cache
def resolver_for(function_name: str) -> APIGatewayHttpResolver:
    """The function's resolver; one per process, since a Powertools router binds to one resolver."""
    app = APIGatewayHttpResolver(enable_validation=True)
    install_problem_handlers(app)
    spec = function_spec(function_name)
    # Powertools puts its request validation (which parses the body) first on every route; this
    # step takes its place and runs authentication and the body limit before it.
    app._request_validation_middleware = AuthenticateThenValidate(spec.body_limit_bytes)
    for module in spec.routers:
        app.include_router(importlib.import_module(module).router, prefix=API_PREFIX)
    return app


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    return len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())


class AuthenticateThenValidate(JsonBodyValidation):
    """Request validation (JSON bodies only, depth bounded, then parsed), preceded by who is calling
    (headers only) and the function's body limit: an unauthenticated request is refused before its
    body is read."""

    def __init__(self, body_limit_bytes: int) -> None:
        super().__init__()
        self._body_limit = body_limit_bytes

    def handler(self, app: EventHandlerInstance, next_middleware: NextMiddleware) -> Response[Any]:
        route = app.context.get("_route")  # the matched route, as Powertools records it
        security.authenticate_route(app, list(getattr(route, "middlewares", None) or ()))
        if _body_size(app.current_event.raw_event) > self._body_limit:
            raise PayloadTooLarge(f"the body exceeds {self._body_limit} bytes")
        return super().handler(app, next_middleware)


def lambda_entry(function_name: str) -> LambdaHandler:
    """The Lambda handler of an HTTP function."""
    app = resolver_for(function_name)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return add_security_headers(app.resolve(event, context))

    return handler


def _openapi(function_name: str) -> dict[str, Any]:
    from fleetlink.api.openapi import describe, document_problems

    document: dict[str, Any] = json.loads(resolver_for(function_name).get_openapi_json_schema(**describe()))
    return document_problems(document)


@cache
def openapi_document() -> dict[str, Any]:
    """The whole API's OpenAPI 3.1 document: every function's routes, merged."""
    documents = [_openapi(spec.name) for spec in http_functions()]
    merged = documents[0]
    merged_schemas = merged.setdefault("components", {}).setdefault("schemas", {})
    for document in documents[1:]:
        merged["paths"].update(document.get("paths", {}))
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            # two functions' models of one name must be one model, or a $ref would name the wrong one
            if merged_schemas.setdefault(name, schema) != schema:
                raise ValueError(f"two different OpenAPI schemas are named {name!r}: rename one model")
    return merged


def route_table() -> list[tuple[str, str, str]]:
    """(function, METHOD, OpenAPI path) of every HTTP route, from the functions' own resolvers."""
    table = []
    for spec in http_functions():
        paths = _openapi(spec.name).get("paths", {})
        table += [(spec.name, method.upper(), path) for path, methods in paths.items() for method in methods]
    return sorted(table)
