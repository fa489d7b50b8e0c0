"""The task items of the single table and their mapping to and from the domain."""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection

from fleetlink.core.tasks.model import (
    CreateRecord,
    Execution,
    ExecutionStatus,
    Task,
)
from fleetlink.store import keys
from fleetlink.store.base import TableItem, entity
from fleetlink.store.table import DUE_INDEX, LIST_INDEX, QUEUE_INDEX, TASK_EXECUTIONS_INDEX

# --- items ---------------------------------------------------------------------------------


#: Final statuses counted in the open-count shards (attribute name = status).
_FINISHED_COUNTS = tuple(status.value for status in ExecutionStatus if status.terminal)
#: Creates under an Idempotency-Key are remembered this long.
IDEMPOTENCY_RETENTION_S = 24 * 3600


class TaskListIndex(GlobalSecondaryIndex["TaskItem"]):
    """gsi1: tasks by month of creation."""

    class Meta:
        index_name = LIST_INDEX.name
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True, attr_name=LIST_INDEX.partition_key)
    gsi1sk = UnicodeAttribute(range_key=True, attr_name=LIST_INDEX.sort_key)


class TaskItem(TableItem, discriminator="task"):
    task_list = TaskListIndex()
    gsi1pk = UnicodeAttribute(attr_name=LIST_INDEX.partition_key)
    gsi1sk = UnicodeAttribute(attr_name=LIST_INDEX.sort_key)
    task_id = UnicodeAttribute()
    task_type = UnicodeAttribute()  # "type" names the item kind
    command = UnicodeAttribute(null=True)
    input = JSONAttribute(null=True)
    targets = JSONAttribute()
    priority = NumberAttribute()
    timeout_seconds = NumberAttribute()
    max_retries = NumberAttribute()
    delivery_timeout_seconds = NumberAttribute()
    max_concurrency = NumberAttribute(null=True)
    max_errors = NumberAttribute(null=True)
    created_at = NumberAttribute()
    created_by = UnicodeAttribute()
    execution_count = NumberAttribute()
    state = UnicodeAttribute()
    finished_at = NumberAttribute(null=True)
    cancelled_at = NumberAttribute(null=True)


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


class QueueIndex(GlobalSecondaryIndex["ExecutionItem"]):
    """gsi2: an agent's queued executions, in claim order."""

    class Meta:
        index_name = QUEUE_INDEX.name
        projection = AllProjection()

    gsi2pk = UnicodeAttribute(hash_key=True, attr_name=QUEUE_INDEX.partition_key)
    gsi2sk = UnicodeAttribute(range_key=True, attr_name=QUEUE_INDEX.sort_key)


class TaskExecutionsIndex(GlobalSecondaryIndex["ExecutionItem"]):
    """gsi3: a task's executions, sharded (status and result only)."""

    class Meta:
        index_name = TASK_EXECUTIONS_INDEX.name
        projection = IncludeProjection(list(TASK_EXECUTIONS_INDEX.non_key_attributes))

    gsi3pk = UnicodeAttribute(hash_key=True, attr_name=TASK_EXECUTIONS_INDEX.partition_key)
    gsi3sk = UnicodeAttribute(range_key=True, attr_name=TASK_EXECUTIONS_INDEX.sort_key)


class DueIndex(GlobalSecondaryIndex["ExecutionItem"]):
    """gsi4: timers (keys and the item kind), sharded."""

    class Meta:
        index_name = DUE_INDEX.name
        projection = IncludeProjection(list(DUE_INDEX.non_key_attributes))

    gsi4pk = UnicodeAttribute(hash_key=True, attr_name=DUE_INDEX.partition_key)
    gsi4sk = UnicodeAttribute(range_key=True, attr_name=DUE_INDEX.sort_key)


class ExecutionItem(TableItem, discriminator="execution"):
    queue = QueueIndex()
    by_task = TaskExecutionsIndex()
    due = DueIndex()
    gsi2pk = UnicodeAttribute(null=True, attr_name=QUEUE_INDEX.partition_key)
    gsi2sk = UnicodeAttribute(null=True, attr_name=QUEUE_INDEX.sort_key)
    gsi3pk = UnicodeAttribute(attr_name=TASK_EXECUTIONS_INDEX.partition_key)
    gsi3sk = UnicodeAttribute(attr_name=TASK_EXECUTIONS_INDEX.sort_key)
    gsi4pk = UnicodeAttribute(null=True, attr_name=DUE_INDEX.partition_key)
    gsi4sk = UnicodeAttribute(null=True, attr_name=DUE_INDEX.sort_key)
    execution_id = UnicodeAttribute()
    task_id = UnicodeAttribute()
    agent_id = UnicodeAttribute()
    task_type = UnicodeAttribute()  # "type" names the item kind
    command = UnicodeAttribute(null=True)
    input = JSONAttribute(null=True)
    priority = NumberAttribute()
    timeout_seconds = NumberAttribute()
    max_retries = NumberAttribute()
    delivery_timeout_seconds = NumberAttribute()
    max_concurrency = NumberAttribute(null=True)
    max_errors = NumberAttribute(null=True)
    fanout = NumberAttribute(null=True)
    status = UnicodeAttribute()
    attempt = NumberAttribute()
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    deliver_by = NumberAttribute()
    leased_at = NumberAttribute(null=True)
    lease_expires_at = NumberAttribute(null=True)
    cancel_requested = BooleanAttribute(default=False)
    started_at = NumberAttribute(null=True)
    finished_at = NumberAttribute(null=True)
    exit_code = NumberAttribute(null=True)
    output = UnicodeAttribute(null=True)
    output_truncated = BooleanAttribute(default=False)
    output_bytes = NumberAttribute(null=True)
    stderr = UnicodeAttribute(null=True)
    stderr_truncated = BooleanAttribute(default=False)
    stderr_bytes = NumberAttribute(null=True)
    output_objects = JSONAttribute(null=True)
    error = UnicodeAttribute(null=True)
    result_status = UnicodeAttribute(null=True)
    result_attempt = NumberAttribute(null=True)
    result_digest = UnicodeAttribute(null=True)
    #: A random token per write: a resend of a write that was applied but whose answer was lost
    #: fails its version condition and finds its own token (``repository._applied``).
    write_token = UnicodeAttribute(null=True)
    version = VersionAttribute()


class FanoutDueIndex(GlobalSecondaryIndex["FanoutItem"]):
    """gsi4 again, for unfinished fan-outs."""

    class Meta:
        index_name = DUE_INDEX.name
        projection = IncludeProjection(list(DUE_INDEX.non_key_attributes))

    gsi4pk = UnicodeAttribute(hash_key=True, attr_name=DUE_INDEX.partition_key)
    gsi4sk = UnicodeAttribute(range_key=True, attr_name=DUE_INDEX.sort_key)


class FanoutItem(TableItem, discriminator="task_fanout"):
    """A large fan-out still being written: while it exists the task cannot finish."""

    due = FanoutDueIndex()
    gsi4pk = UnicodeAttribute(attr_name=DUE_INDEX.partition_key)
    gsi4sk = UnicodeAttribute(attr_name=DUE_INDEX.sort_key)
    task_id = UnicodeAttribute()


class FanoutChunkItem(TableItem, discriminator="task_fanout_chunk"):
    """Executions of a large fan-out not yet written: ``[[execution_id, agent_id], ...]``."""

    executions = JSONAttribute()


class IdempotencyItem(TableItem, discriminator="idempotency"):
    """A create under an Idempotency-Key: its request's digest and what it answered."""

    task_id = UnicodeAttribute()
    request_digest = UnicodeAttribute()
    agent_ids = ListAttribute(of=UnicodeAttribute)


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
    return IdempotencyItem(
        keys.idempotency_pk(record.actor, record.idempotency_key),
        keys.SINGLETON_SK,
        task_id=record.task_id,
        request_digest=record.request_digest,
        agent_ids=record.agent_ids,
        ttl=now_ms // 1000 + IDEMPOTENCY_RETENTION_S,
    )


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
