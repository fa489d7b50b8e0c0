"""The Lambda entry of an HTTP function: its resolver (``fleetlink.api.resolver``), logged and answered
with the security headers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from fleetlink.api.resolver import resolver_for
from fleetlink.api.security import API_DOCUMENT
from fleetlink.api.security_headers import add_security_headers

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]

logger = Logger(service="fleetlink")


def api_document() -> dict[str, Any]:
    """The whole API's OpenAPI document (built on first use, from every function's routers)."""
    from fleetlink.api.document import openapi_document

    return openapi_document()


def lambda_entry(function_name: str) -> LambdaHandler:
    """The Lambda handler of an HTTP function.

    Routes reach the API's own document through the request context (``API_DOCUMENT``): it is
    built from every router, the one serving it among them, so that router cannot import it.
    """
    app = resolver_for(function_name)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        app.append_context(**{API_DOCUMENT: api_document})
        return add_security_headers(app.resolve(event, context))

    return handler
