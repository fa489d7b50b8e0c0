"""The task items of the single table and their mapping to and from the domain."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute, VersionAttribute
from pynamodb.expressions.update import Action

from fleetlink.core.tasks.model import (
    CreateRecord,
    Execution,
    ExecutionStatus,
    Task,
)
from fleetlink.store import keys
from fleetlink.store.base import (
    DueIndex,
    ListIndex,
    QueueIndex,
    TableItem,
    TaskExecutionsIndex,
    attributes_of,
    entity,
    index_keys,
)
from fleetlink.store.table import (
    AGENT_EXECUTIONS_INDEX,
    DUE_INDEX,
    LIST_INDEX,
    QUEUE_INDEX,
    TASK_EXECUTIONS_INDEX,
)

# --- items ---------------------------------------------------------------------------------


#: Final statuses counted in the open-count shards (attribute name = status).
_FINISHED_COUNTS = tuple(status.value for status in ExecutionStatus if status.terminal)
#: Creates under an Idempotency-Key are remembered this long.
IDEMPOTENCY_RETENTION_S = 24 * 3600


class TaskItem(attributes_of(Task, exclude={"type"}), TableItem, discriminator="task"):  # type: ignore[misc]
    #: tasks by month of creation
    task_list: ListIndex[TaskItem] = ListIndex()
    gsi1pk, gsi1sk = index_keys(LIST_INDEX)
    task_type = UnicodeAttribute()  # "type" names the item kind


class TaskOpenItem(TableItem, discriminator="task_open"):
    """One shard of the count of a task's unfinished executions, and of its finished ones per status."""

    task_id = UnicodeAttribute()
    open = NumberAttribute()
    succeeded = NumberAttribute(null=True)
    failed = NumberAttribute(null=True)
    timed_out = NumberAttribute(null=True)
    cancelled = NumberAttribute(null=True)
    expired = NumberAttribute(null=True)


class TaskSlotsItem(TableItem, discriminator="task_slots"):
    """How many of a max_concurrency task's executions hold a lease."""

    active = NumberAttribute(default=0)
    limit = NumberAttribute()


class ExecutionItem(
    attributes_of(Execution, exclude={"type"}),  # type: ignore[misc]
    TableItem,
    discriminator="execution",
):
    #: An agent's queue (while queued), a task's executions, and timers (while one runs).
    queue: QueueIndex[ExecutionItem] = QueueIndex()
    by_task: TaskExecutionsIndex[ExecutionItem] = TaskExecutionsIndex()
    due: DueIndex[ExecutionItem] = DueIndex()
    gsi2pk, gsi2sk = index_keys(QUEUE_INDEX, null=True)
    gsi3pk, gsi3sk = index_keys(TASK_EXECUTIONS_INDEX)
    gsi4pk, gsi4sk = index_keys(DUE_INDEX, null=True)
    #: An agent's executions (gsi5, queried by ``store.agent_executions``); null only on items
    #: written before the index existed.
    gsi5pk, gsi5sk = index_keys(AGENT_EXECUTIONS_INDEX, null=True)
    task_type = UnicodeAttribute()  # "type" names the item kind
    #: A random token per write: a resend of a write that was applied but whose answer was lost
    #: fails its version condition and finds its own token (``repository._applied``).
    write_token = UnicodeAttribute(null=True)
    version = VersionAttribute()


class FanoutItem(TableItem, discriminator="task_fanout"):
    """A large fan-out still being written: while it exists the task cannot finish."""

    due: DueIndex[FanoutItem] = DueIndex()
    gsi4pk, gsi4sk = index_keys(DUE_INDEX)
    task_id = UnicodeAttribute()


class FanoutChunkItem(TableItem, discriminator="task_fanout_chunk"):
    """Executions of a large fan-out not yet written: ``[[execution_id, agent_id], ...]``."""

    executions = JSONAttribute()


class IdempotencyItem(
    attributes_of(CreateRecord, maps=True, exclude={"actor", "idempotency_key"}),  # type: ignore[misc]
    TableItem,
    discriminator="idempotency",
):
    """A create under an Idempotency-Key (its key holds the actor and the key): its request's digest
    and what it answered."""


def _count_item(execution: Execution) -> TaskOpenItem:
    """The open-count shard an execution is counted in."""
    shard = keys.task_shard(execution.execution_id, execution.fanout)
    return TaskOpenItem(keys.task_open_pk(execution.task_id, shard), keys.SINGLETON_SK)


def _closed_actions(execution: Execution) -> list[Action]:
    """One fewer open execution, one more with its final status."""
    actions: list[Action] = [TaskOpenItem.open.add(-1)]
    if execution.status.value in _FINISHED_COUNTS:
        actions.append(getattr(TaskOpenItem, execution.status.value).add(1))
    return actions


def _open_item(task_id: str, shard: int, count: int) -> TaskOpenItem:
    return TaskOpenItem(keys.task_open_pk(task_id, shard), keys.SINGLETON_SK, task_id=task_id, open=count)


def _idempotency_item(record: CreateRecord, now_ms: int) -> IdempotencyItem:
    values = asdict(record)  # the actor and the idempotency key make the item's key
    pk = keys.idempotency_pk(values.pop("actor"), values.pop("idempotency_key"))
    return IdempotencyItem(pk, keys.SINGLETON_SK, ttl=now_ms // 1000 + IDEMPOTENCY_RETENTION_S, **values)


def _task_item(task: Task) -> TaskItem:
    gsi1pk, gsi1sk = keys.task_list_keys(task.task_id, task.created_at)
    values: dict[str, Any] = task.model_dump(mode="json", exclude={"type"})
    return TaskItem(
        keys.task_pk(task.task_id),
        keys.SINGLETON_SK,
        gsi1pk=gsi1pk,
        gsi1sk=gsi1sk,
        task_type=task.type,
        **values,
    )


def _task(item: TaskItem) -> Task:
    return entity(Task, item, type=item.task_type)


def _execution(item: ExecutionItem) -> Execution:
    return entity(Execution, item, type=item.task_type)
