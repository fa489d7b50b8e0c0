"""Contention and throttling: a few quick jittered retries inside botocore, the same for every call.

DynamoDB cancels a transaction that meets another one on an item (``TransactionConflict``) or is
throttled, and refuses a plain write to an item a transaction holds
(``TransactionConflictException``); nothing was written, so resending is safe. botocore retries
throttling on its own but with backoffs of seconds, and never conflicts. This handler, registered
first on ``needs-retry``, decides for every DynamoDB call: up to :data:`MAX_ATTEMPTS` attempts with
full-jitter backoff short enough for a request handler; after that the error reaches the caller,
and ``store.errors.translate`` makes it a 429 or 503 with ``Retry-After``. A cancelled transaction
with a failed condition is never retried (the condition would fail again).
"""

from __future__ import annotations

import random
from typing import Any

#: Attempts per call, the first included (PynamoDB's ``max_retry_attempts`` + 1).
MAX_ATTEMPTS = 4
BASE_DELAY_S = 0.025
MAX_DELAY_S = 0.4

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionInProgressException",
    }
)
CONFLICT_CODES = frozenset({"TransactionConflictException"})
#: Cancellation reasons that a resend may not meet again.
TRANSIENT_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
CANCELLED = "TransactionCanceledException"


def transient_reasons(reasons: list[str | None]) -> bool:
    """A transaction cancelled only for contention or throttling (no failed condition, no bad input)."""
    named = {reason for reason in reasons if reason not in (None, "None")}
    return bool(named) and named <= TRANSIENT_REASONS


def retryable(code: str | None, reasons: list[str | None]) -> bool:
    if code in THROTTLING_CODES or code in CONFLICT_CODES:
        return True
    return code == CANCELLED and transient_reasons(reasons)


def backoff_s(attempts: int) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^attempts)]."""
    return random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2**attempts))  # noqa: S311 (jitter, not a secret)


def needs_retry(response: Any = None, attempts: int = 1, **_: Any) -> float | None:
    """botocore ``needs-retry`` handler: seconds to wait before the next attempt, else None."""
    if response is None or attempts >= MAX_ATTEMPTS:
        return None
    parsed = response[1] or {}
    code = parsed.get("Error", {}).get("Code")
    reasons = [reason.get("Code") for reason in parsed.get("CancellationReasons") or []]
    return backoff_s(attempts) if retryable(code, reasons) else None


def install(client: Any) -> None:
    """Put the handler ahead of botocore's own on a DynamoDB client (once per client)."""
    client.meta.events.register_first("needs-retry.dynamodb", needs_retry, unique_id="fleetlink-contention")
