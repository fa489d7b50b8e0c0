"""Tasks on the single table: the item models (``items``), the adapter of the task port
(``repository``: tasks, executions, their queue, timers, completion counts and idempotent creates)
and the writes of large fan-outs (``fanout``)."""

from fleetlink.store.tasks.fanout import (
    BATCH_WRITE_ROUNDS,
    FANOUT_CHUNK,
    FANOUT_CHUNK_RETENTION_S,
    FANOUT_GRACE_S,
    FanoutWrites,
)
from fleetlink.store.tasks.items import (
    IDEMPOTENCY_RETENTION_S,
    ExecutionItem,
    FanoutChunkItem,
    FanoutItem,
    IdempotencyItem,
    TaskItem,
    TaskOpenItem,
    TaskSlotsItem,
)
from fleetlink.store.tasks.repository import LIST_MONTHS, DynamoTaskRepository

__all__ = [
    "BATCH_WRITE_ROUNDS",
    "FANOUT_CHUNK",
    "FANOUT_CHUNK_RETENTION_S",
    "FANOUT_GRACE_S",
    "IDEMPOTENCY_RETENTION_S",
    "LIST_MONTHS",
    "DynamoTaskRepository",
    "ExecutionItem",
    "FanoutChunkItem",
    "FanoutItem",
    "FanoutWrites",
    "IdempotencyItem",
    "TaskItem",
    "TaskOpenItem",
    "TaskSlotsItem",
]
