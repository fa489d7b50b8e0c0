"""DynamoDB failures the caller can act on, as domain errors (throttling → 429, outage → 503)."""

from __future__ import annotations

from botocore import exceptions as botocore_errors
from pynamodb.exceptions import PynamoDBException

from fleetlink.core.errors import FleetlinkError, Throttled, Unavailable
from fleetlink.store.contention import retryable

#: Failures where DynamoDB never answered: no connection, or no answer in time (it may have applied
#: a write; the writes that matter recognise their own applied write when resent).
NO_ANSWER = (botocore_errors.ConnectionError, botocore_errors.HTTPClientError)
UNAVAILABLE_CODES = frozenset({"InternalServerError", "ServiceUnavailable", "InternalFailure"})


def failure_code(error: PynamoDBException) -> str | None:
    """The error code DynamoDB answered, None when there was no answer (a timeout, a lost connection)."""
    try:
        return error.cause_response_code
    except (AttributeError, KeyError, TypeError):  # the cause carries no error response
        return None


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
    if isinstance(error.cause, NO_ANSWER):
        return Unavailable("the store cannot be reached; retry shortly", retry_after_s=2)
    return None
