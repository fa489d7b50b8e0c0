"""Readiness of the store: one key read (0.5 RCU), which also proves the function's permissions."""

from __future__ import annotations

from pynamodb.exceptions import PynamoDBException

from fleetlink.store import keys
from fleetlink.store.base import TableItem


class ReadinessProbe(TableItem, discriminator="health"):
    """Never written: the model the readiness query goes through (the base model alone cannot
    query before any item kind is imported, and readiness needs none)."""


def table_answers() -> bool:
    try:
        pk, sk = keys.READINESS_KEY
        ReadinessProbe.count(pk, ReadinessProbe.sk == sk, limit=1)
    except PynamoDBException:
        return False
    return True
