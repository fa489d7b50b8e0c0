"""One resolver per HTTP function, built from the routers its registry entry imports."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.types import EventHandlerInstance

from fleetlink.api import security
from fleetlink.api.bodies import JsonBodyValidation
from fleetlink.api.functions import API_PREFIX, function_spec
from fleetlink.api.problems import install_problem_handlers
from fleetlink.core.errors import PayloadTooLarge


@cache
def resolver_for(function_name: str) -> APIGatewayHttpResolver:
    """The function's resolver; one per process, since a Powertools router binds to one resolver."""
    app = APIGatewayHttpResolver(enable_validation=True)
    install_problem_handlers(app)
    spec = function_spec(function_name)
    # Powertools puts its request validation (which parses the body) first on every route; this
    # step takes its place and runs authentication and the body limit before it.
    app._request_validation_middleware = AuthenticateThenValidate(spec.body_limit_bytes)
    for router in spec.routers() if spec.routers is not None else ():
        app.include_router(router, prefix=API_PREFIX)
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
