"""Path and query parameters, and route access options, shared by routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from aws_lambda_powertools.event_handler.openapi.params import Path

from fleetlink.core.ids import IdPrefix, id_pattern

AgentIdPath = Annotated[str, Path(pattern=id_pattern(IdPrefix.AGENT), description="agt_ id")]


class RouteAccess(TypedDict):
    """Who may call a group of routes: keyword arguments of a route decorator (``**AGENT``)."""

    middlewares: list[Callable[..., Any]]
    security: list[dict[str, list[str]]]
    tags: list[str]
