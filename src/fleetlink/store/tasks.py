"""Tasks on the single table: item models and the adapter of the task port (tasks, executions, their
queue, timers and completion counts)."""

from __future__ import annotations

import datetime
from collections import Counter
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.constants import ALL_OLD
from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection

from fleetlink.core.entities import Page
from fleetlink.core.tasks.model import Execution, ExecutionStatus, Task, TaskProgress, TaskState
from fleetlink.core.tasks.ports import DueTimer
from fleetlink.store import keys
from fleetlink.store.base import TableItem, entity, transaction
from fleetlink.store.conditions import failed_conditions
from fleetlink.store.cursors import CursorCodec, invalid_cursor, last_key_of
from fleetlink.store.table import DUE_INDEX, LIST_INDEX, QUEUE_INDEX, TASK_EXECUTIONS_INDEX

# --- items ---------------------------------------------------------------------------------


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
    """gsi3: a task's executions."""

    class Meta:
        index_name = TASK_EXECUTIONS_INDEX.name
        projection = AllProjection()

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
    error = UnicodeAttribute(null=True)
    result_attempt = NumberAttribute(null=True)
    result_digest = UnicodeAttribute(null=True)
    version = VersionAttribute()


# --- repository ----------------------------------------------------------------------------

#: Shards of a task's open-execution count: a large fan-out finishing at once spreads its writes.
OPEN_SHARDS = 8
#: How far back the task list looks (months), beyond the retention of finished tasks.
LIST_MONTHS = 13
#: Final statuses counted in the open-count shards (attribute name = status).
_FINISHED_COUNTS = tuple(status.value for status in ExecutionStatus if status.terminal)


class DynamoTaskRepository:
    def __init__(self, retention_days: int, cursors: CursorCodec | None = None) -> None:
        self._retention_s = retention_days * 86_400
        self._cursors = cursors or CursorCodec()

    # --- tasks -------------------------------------------------------------------------

    def create(self, task: Task, executions: list[Execution]) -> None:
        """Task, its open counts and executions, in batches (BatchWriteItem, 25 a request)."""
        open_per_shard = Counter(keys.shard_of(e.execution_id, OPEN_SHARDS) for e in executions)
        with TaskItem.batch_write() as batch:
            batch.save(_task_item(task))
            if task.max_concurrency:
                batch.save(
                    TaskSlotsItem(keys.task_pk(task.task_id), keys.TASK_SLOTS_SK, limit=task.max_concurrency)
                )
            for shard, count in open_per_shard.items():
                batch.save(
                    TaskOpenItem(
                        keys.task_open_pk(task.task_id, shard),
                        keys.SINGLETON_SK,
                        task_id=task.task_id,
                        open=count,
                    )
                )
            for execution in executions:
                batch.save(self._execution_item(execution, version=1))

    def get_task(self, task_id: str) -> Task | None:
        try:
            return _task(TaskItem.get(keys.task_pk(task_id), keys.SINGLETON_SK))
        except TaskItem.DoesNotExist:
            return None

    def save_task(self, task: Task) -> None:
        _task_item(task).save()

    def list_tasks(
        self, *, state: TaskState | None, limit: int, cursor: str | None, now_ms: int
    ) -> Page[Task]:
        """Newest first, month by month; the cursor holds the (absolute) month and the last key."""
        scope = f"tasks|state={state or ''}"
        newest, oldest = _month_index(now_ms), _month_index(now_ms) - (LIST_MONTHS - 1)
        month, last_key = newest, None
        if cursor is not None:
            position = self._cursors.open(scope, cursor)
            month, last_key = position.get("m", -1), last_key_of(position)
            if not isinstance(month, int) or isinstance(month, bool) or not oldest <= month <= newest:
                raise invalid_cursor()
        found: list[Task] = []
        condition = TaskItem.state == state.value if state else None
        while month >= oldest and len(found) < limit:
            results = TaskItem.task_list.query(
                keys.task_list_pk(_month_start_ms(month)),
                scan_index_forward=False,
                filter_condition=condition,
                limit=limit - len(found),
                last_evaluated_key=last_key,
            )
            found += [_task(item) for item in results]
            last_key = results.last_evaluated_key
            if last_key is None:
                month -= 1
        next_cursor = self._cursors.seal(scope, {"m": month, "k": last_key}) if month >= oldest else None
        return Page[Task](items=found, cursor=next_cursor)

    def progress_of(self, task_ids: list[str]) -> dict[str, TaskProgress]:
        """Sums of each task's count shards (BatchGetItem, 100 keys a request)."""
        shards = [(keys.task_open_pk(t, s), keys.SINGLETON_SK) for t in task_ids for s in range(OPEN_SHARDS)]
        progress = {task_id: TaskProgress() for task_id in task_ids}
        for item in TaskOpenItem.batch_get(shards):
            found = progress.get(item.task_id)
            if found is None:
                continue
            found.open += int(item.open)
            for status in _FINISHED_COUNTS:
                count = getattr(item, status)
                if count:
                    found.finished[status] = found.finished.get(status, 0) + int(count)
        return progress

    # --- executions --------------------------------------------------------------------

    def executions_of(self, task_id: str) -> list[Execution]:
        return [_execution(item) for item in ExecutionItem.by_task.query(keys.task_executions_pk(task_id))]

    def get_execution(self, execution_id: str) -> Execution | None:
        try:
            item = ExecutionItem.get(keys.execution_pk(execution_id), keys.SINGLETON_SK, consistent_read=True)
        except ExecutionItem.DoesNotExist:
            return None
        return _execution(item)

    def queued_for(self, agent_id: str, limit: int) -> list[Execution]:
        return [_execution(item) for item in ExecutionItem.queue.query(keys.queue_pk(agent_id), limit=limit)]

    def count_queued(self, agent_id: str) -> int:
        return ExecutionItem.queue.count(keys.queue_pk(agent_id))

    def transition(self, before: Execution, after: Execution) -> bool:
        """Conditional on the version read; a lease taken or given back moves a concurrency slot too."""
        item = self._execution_item(after, version=before.version)
        slot = _slot_change(before, after)
        try:
            if slot:
                slots = TaskSlotsItem(keys.task_pk(after.task_id), keys.TASK_SLOTS_SK)
                with transaction() as tx:
                    tx.save(item)
                    room = TaskSlotsItem.active < TaskSlotsItem.limit if slot > 0 else None
                    tx.update(
                        slots, actions=[TaskSlotsItem.active.add(slot)], condition=room, return_values=ALL_OLD
                    )
            else:
                item.save()
        except (PutError, TransactWriteError) as error:
            if _condition_failed(error):
                return False
            raise
        if after.status.terminal and not before.status.terminal:
            self._close_one(after)
        return True

    def _close_one(self, execution: Execution) -> None:
        """Count the execution done; the last one of the task finishes it (state, time, TTL)."""
        shard = TaskOpenItem(
            keys.task_open_pk(execution.task_id, keys.shard_of(execution.execution_id, OPEN_SHARDS)),
            keys.SINGLETON_SK,
        )
        counted: list[Action] = [TaskOpenItem.open.add(-1)]
        if execution.status.value in _FINISHED_COUNTS:
            counted.append(getattr(TaskOpenItem, execution.status.value).add(1))
        shard.update(actions=counted)  # returns the new count into `shard`
        if shard.open > 0:
            return
        counts = TaskOpenItem.batch_get(
            [(keys.task_open_pk(execution.task_id, s), keys.SINGLETON_SK) for s in range(OPEN_SHARDS)]
        )
        if any(item.open > 0 for item in counts):
            return
        task = TaskItem(keys.task_pk(execution.task_id), keys.SINGLETON_SK)
        now = execution.updated_at
        done: list[Action] = [
            TaskItem.finished_at.set(now),
            TaskItem.ttl.set(now // 1000 + self._retention_s),
        ]
        unfinished = TaskItem.finished_at.does_not_exist()
        # One write: an active task becomes finished; a cancelled one keeps its state (second try).
        for actions, condition in (
            (
                [*done, TaskItem.state.set(TaskState.FINISHED.value)],
                unfinished & (TaskItem.state == TaskState.ACTIVE.value),
            ),
            (done, unfinished),
        ):
            try:
                task.update(actions=actions, condition=condition)
                return
            except UpdateError as error:
                if error.cause_response_code != "ConditionalCheckFailedException":
                    raise

    def due(self, timer: DueTimer, now_ms: int, limit: int) -> list[str]:
        found: list[str] = []
        for shard in range(keys.LIST_SHARDS):
            results = ExecutionItem.due.query(
                keys.due_pk(timer.value, shard), ExecutionItem.gsi4sk < f"{now_ms + 1:013d}", limit=limit
            )
            found += [item.pk.removeprefix("EXE#") for item in results]
        return found

    def _execution_item(self, execution: Execution, version: int | None) -> ExecutionItem:
        """The item, with the index keys its state puts it under and, once finished, its TTL."""
        values: dict[str, Any] = execution.model_dump(mode="json", exclude={"type", "version"})
        gsi3pk, gsi3sk = keys.task_executions_keys(
            execution.task_id, execution.agent_id, execution.execution_id
        )
        item = ExecutionItem(
            keys.execution_pk(execution.execution_id),
            keys.SINGLETON_SK,
            task_type=execution.type,
            gsi3pk=gsi3pk,
            gsi3sk=gsi3sk,
            **values,
        )
        if execution.status is ExecutionStatus.QUEUED:
            item.gsi2pk, item.gsi2sk = keys.queue_keys(
                execution.agent_id, execution.priority, execution.execution_id
            )
        due_at = execution.due_at()
        if due_at is not None:
            timer = DueTimer.LEASE if execution.status.holds_lease else DueTimer.DELIVERY
            item.gsi4pk, item.gsi4sk = keys.due_keys(timer.value, execution.execution_id, due_at)
        if execution.status.terminal:
            item.ttl = execution.updated_at // 1000 + self._retention_s
        if version is not None:
            item.version = version
        return item


def _month_index(at_ms: int) -> int:
    """Months since year 0 (absolute, so a cursor means the same month whenever it is used)."""
    at = datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC)
    return at.year * 12 + at.month - 1


def _month_start_ms(month_index: int) -> int:
    year, month = divmod(month_index, 12)
    return int(datetime.datetime(year, month + 1, 1, tzinfo=datetime.UTC).timestamp() * 1000)


def _slot_change(before: Execution, after: Execution) -> int:
    if not after.max_concurrency:
        return 0
    return int(after.status.holds_lease) - int(before.status.holds_lease)


def _condition_failed(error: PutError | TransactWriteError) -> bool:
    if isinstance(error, TransactWriteError):
        return bool(failed_conditions(error))
    return error.cause_response_code == "ConditionalCheckFailedException"


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
