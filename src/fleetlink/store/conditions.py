"""Failed conditions of a write, told apart by item kind."""

from __future__ import annotations

from pynamodb.exceptions import DeleteError, PutError, TransactWriteError, UpdateError

from fleetlink.store.base import TableItem
from fleetlink.store.errors import failure_code

CONDITION_FAILED = "ConditionalCheckFailedException"


def condition_failed(error: PutError | UpdateError | DeleteError) -> bool:
    """A single-item write refused by its condition (not a throttle, not an outage)."""
    return failure_code(error) == CONDITION_FAILED


def failed_conditions(error: TransactWriteError) -> set[str]:
    """Model names of the items whose condition failed ("" for an item that did not exist).

    Items are told apart by the old image returned on failure (``ALL_OLD``), not by position:
    PynamoDB reorders a transaction's operations by kind.
    """
    failed = set()
    for reason in error.cancellation_reasons or []:
        if reason is not None and reason.code == "ConditionalCheckFailed":
            model = TableItem._get_discriminator_class(reason.raw_item) if reason.raw_item else None
            failed.add(model.__name__ if model else "")
    return failed
