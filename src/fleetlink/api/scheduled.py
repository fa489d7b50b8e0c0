"""The Lambda entry of a scheduled function: EventBridge (or the dev stack's timer) names a duty, it runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from fleetlink.api.deps import get_deps
from fleetlink.api.functions import function_spec

logger = Logger(service="fleetlink")


def scheduled_entry(function_name: str) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The handler: runs the duty named in the event's ``detail.duty`` (every duty when absent)."""

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        duties = {duty.name: duty for duty in function_spec(function_name).duties}
        named = (event.get("detail") or {}).get("duty")
        if named is not None and named not in duties:
            raise ValueError(f"unknown {function_name} duty {named!r}")
        deps = get_deps()
        handled = {name: duty.run(deps) for name, duty in duties.items() if named in (None, name)}
        logger.info(f"{function_name} done", extra={"handled": handled})
        return {"handled": handled}

    return handler
