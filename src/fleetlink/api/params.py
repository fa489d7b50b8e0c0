"""Path and query parameters shared by routes."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path

from fleetlink.core.ids import IdPrefix, id_pattern

AgentIdPath = Annotated[str, Path(pattern=id_pattern(IdPrefix.AGENT), description="agt_ id")]
