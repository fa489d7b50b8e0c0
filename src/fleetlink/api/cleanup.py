"""The scheduled cleanup function: EventBridge (or the dev stack's timer) names a duty, it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from fleetlink.api.deps import Deps, get_deps

logger = Logger(service="fleetlink")


@dataclass(frozen=True)
class Duty:
    """A periodic job: ``run(deps)`` returns how many items it handled."""

    name: str
    every_minutes: int
    run: Callable[[Deps], int]
    description: str


#: Every cleanup duty; the CDK app schedules one EventBridge rule per entry, the dev stack a timer.
#: Retention needs none: finished tasks and executions carry a TTL and DynamoDB deletes them.
DUTIES: dict[str, Duty] = {
    duty.name: duty
    for duty in (
        Duty(
            "lease-expiry",
            1,
            lambda deps: deps.task_service.expire_leases(),
            "attempts whose agent stopped renewing the lease: timed out, requeued while retries remain",
        ),
        Duty(
            "delivery-expiry",
            5,
            lambda deps: deps.task_service.expire_deliveries(),
            "queued executions nobody claimed before their delivery deadline: expired",
        ),
        Duty(
            "fanout",
            1,
            lambda deps: deps.task_service.continue_fanouts(),
            "large fan-outs whose create ran out of time: the rest of their executions written",
        ),
    )
}


def scheduled_entry() -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda handler: runs the duty named in the event's ``detail.duty`` (every duty when absent)."""

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        named = (event.get("detail") or {}).get("duty")
        if named is not None and named not in DUTIES:
            raise ValueError(f"unknown cleanup duty {named!r}")
        deps = get_deps()
        handled = {name: duty.run(deps) for name, duty in DUTIES.items() if named in (None, name)}
        logger.info("cleanup done", extra={"handled": handled})
        return {"handled": handled}

    return handler
