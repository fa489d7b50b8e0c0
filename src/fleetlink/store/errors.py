"""DynamoDB failures the caller can act on, as domain errors (throttling → 429, outage → 503)."""

from __future__ import annotations

from pynamodb.exceptions import PynamoDBException

from fleetlink.core.errors import FleetlinkError, Throttled, Unavailable
from fleetlink.store.contention import retryable

UNAVAILABLE_CODES = frozenset({"InternalServerError", "ServiceUnavailable", "InternalFailure"})


def failure_code(error: PynamoDBException) -> str | None:
    return error.cause_response_code


def translate(error: PynamoDBException) -> FleetlinkError | None:
    """The domain error for a store failure a client should retry, else None (a bug: 500)."""
    code = failure_code(error)
    reasons = [
        reason.code if reason else None for reason in getattr(error, "cancellation_reasons", None) or []
    ]
    if retryable(code, reasons):
        return Throttled(
            "the store is busy with other writes to the same items; retry shortly",
            code="store-busy",
            retry_after_s=1,
        )
    if code in UNAVAILABLE_CODES:
        return Unavailable("the store is unavailable; retry shortly", retry_after_s=2)
    if error.cause is not None and "connect" in type(error.cause).__name__.lower():
        return Unavailable("the store cannot be reached; retry shortly", retry_after_s=2)
    return None
