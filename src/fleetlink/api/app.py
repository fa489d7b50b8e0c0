"""One resolver per HTTP function, built from its registry entry's routers; the Lambda entry around it."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from fleetlink.api.bodies import JsonBodyValidation
from fleetlink.api.functions import API_PREFIX, function_spec, http_functions
from fleetlink.api.problems import install_problem_handlers, problem

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]

logger = Logger(service="fleetlink")


@cache
def resolver_for(function_name: str) -> APIGatewayHttpResolver:
    """The function's resolver; one per process, since a Powertools router binds to one resolver."""
    app = APIGatewayHttpResolver(enable_validation=True)
    app._request_validation_middleware = JsonBodyValidation()  # bodies: JSON only, depth bounded
    install_problem_handlers(app)
    for module in function_spec(function_name).routers:
        app.include_router(importlib.import_module(module).router, prefix=API_PREFIX)
    return app


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    return len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())


def _too_large(event: dict[str, Any], limit: int) -> dict[str, Any] | None:
    """A 413 problem for a body over the function's limit, before anything parses it."""
    path = event.get("rawPath", "")
    if _body_size(event) <= limit:
        return None
    response = problem(413, "payload-too-large", f"the body exceeds {limit} bytes", instance=path)
    return {
        "statusCode": response.status_code,
        "headers": {"Content-Type": response.content_type or "", **response.headers},
        "body": response.body,
        "isBase64Encoded": False,
    }


def lambda_entry(function_name: str) -> LambdaHandler:
    """The Lambda handler of an HTTP function."""
    app = resolver_for(function_name)
    limit = function_spec(function_name).body_limit_bytes

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return _too_large(event, limit) or app.resolve(event, context)

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
    for document in documents[1:]:
        merged["paths"].update(document.get("paths", {}))
        schemas = document.get("components", {}).get("schemas", {})
        merged.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
    return merged


def route_table() -> list[tuple[str, str, str]]:
    """(function, METHOD, OpenAPI path) of every HTTP route, from the functions' own resolvers."""
    table = []
    for spec in http_functions():
        paths = _openapi(spec.name).get("paths", {})
        table += [(spec.name, method.upper(), path) for path, methods in paths.items() for method in methods]
    return sorted(table)
