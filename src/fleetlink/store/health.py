"""Readiness of the store: one key read (0.5 RCU), which also proves the function's permissions."""

from __future__ import annotations

from pynamodb.exceptions import PynamoDBException

from fleetlink.store.base import TableItem

READINESS_KEY = ("HEALTH#", "#")


def table_answers() -> bool:
    try:
        TableItem.count(READINESS_KEY[0], TableItem.sk == READINESS_KEY[1], limit=1)
    except PynamoDBException:
        return False
    return True
