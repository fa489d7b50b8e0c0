"""DynamoDB failures the caller can act on, as domain errors: the one translation every store adapter
applies at its boundary (PynamoDB's errors and boto3's alike), with one ``Retry-After`` rule:
contention and throttling → 429 after 1 s, an outage or an unreachable store → 503 after 2 s."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError
from pynamodb.exceptions import PynamoDBException

from fleetlink.core.errors import FleetlinkError, Throttled, Unavailable
from fleetlink.store.contention import retryable

UNAVAILABLE_CODES = frozenset({"InternalServerError", "ServiceUnavailable", "InternalFailure"})
#: Seconds a client is told to wait (``Retry-After``).
BUSY_RETRY_AFTER_S = 1
UNAVAILABLE_RETRY_AFTER_S = 2


def failure_code(error: PynamoDBException) -> str | None:
    """The error code DynamoDB answered, None when there was no answer (a timeout, a lost connection)."""
    try:
        return error.cause_response_code
    except (AttributeError, KeyError, TypeError):  # the cause carries no error response
        return None


def store_error(
    code: str | None, reasons: Sequence[str | None] = (), *, unreachable: bool = False
) -> FleetlinkError | None:
    """The domain error for a DynamoDB error ``code`` (and a cancelled transaction's ``reasons``)
    a client should retry, else None (a bug: 500). ``unreachable``: no answer came at all."""
    if retryable(code, list(reasons)):
        return Throttled(
            "the store is busy with other writes to the same items; retry shortly",
            code="store-busy",
            retry_after_s=BUSY_RETRY_AFTER_S,
        )
    if code in UNAVAILABLE_CODES:
        return Unavailable("the store is unavailable; retry shortly", retry_after_s=UNAVAILABLE_RETRY_AFTER_S)
    if unreachable:
        return Unavailable(
            "the store cannot be reached; retry shortly", retry_after_s=UNAVAILABLE_RETRY_AFTER_S
        )
    return None


def translate(error: PynamoDBException) -> FleetlinkError | None:
    """:func:`store_error` for a PynamoDB failure."""
    reasons = [
        reason.code if reason else None for reason in getattr(error, "cancellation_reasons", None) or []
    ]
    # no answer came: no connection, or none in time (a write may have been applied; the writes that
    # matter recognise their own applied write when resent)
    unreachable = isinstance(error.cause, (ConnectionError, HTTPClientError))
    return store_error(failure_code(error), reasons, unreachable=unreachable)


def translate_boto(error: ClientError | BotoCoreError) -> FleetlinkError | None:
    """:func:`store_error` for a boto3 client's failure (a BotoCoreError: no answer came)."""
    if isinstance(error, BotoCoreError):
        return store_error(None, unreachable=True)
    reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons") or []]
    return store_error(error.response.get("Error", {}).get("Code"), reasons)


def domain_error(error: Exception) -> FleetlinkError | None:
    """:func:`translate` or :func:`translate_boto`, whichever fits ``error``; None for anything else."""
    if isinstance(error, PynamoDBException):
        return translate(error)
    if isinstance(error, (ClientError, BotoCoreError)):
        return translate_boto(error)
    return None


#: How deep the current call is inside adapter methods: only the outermost one translates, so a
#: method that handles a store error raised by another one of its adapter still sees it as is.
_adapter_depth: ContextVar[int] = ContextVar("store_adapter_depth", default=0)

_Function = TypeVar("_Function", bound=Callable[..., Any])
_Class = TypeVar("_Class", bound=type)


def _at_boundary(method: _Function) -> _Function:
    @functools.wraps(method)
    def translating(*args: Any, **kwargs: Any) -> Any:
        depth = _adapter_depth.set(_adapter_depth.get() + 1)
        try:
            return method(*args, **kwargs)
        except (PynamoDBException, ClientError, BotoCoreError) as error:
            translated = domain_error(error) if _adapter_depth.get() == 1 else None
            if translated is None:
                raise
            raise translated from None
        finally:
            _adapter_depth.reset(depth)

    return translating  # type: ignore[return-value]


def translates_store_errors(cls: _Class) -> _Class:
    """Class decorator of a store adapter: every public method (static ones too) hands core domain
    errors (:func:`store_error`) instead of PynamoDB's or botocore's, at the adapter's boundary; an
    error no rule covers (a bug) goes on unchanged."""
    for name, attribute in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(attribute, staticmethod):
            setattr(cls, name, staticmethod(_at_boundary(attribute.__func__)))
        elif callable(attribute) and not isinstance(attribute, type):
            setattr(cls, name, _at_boundary(attribute))
    return cls
