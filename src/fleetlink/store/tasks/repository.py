"""The adapter of the task port: tasks, executions, their queue, timers and completion counts."""

from __future__ import annotations

import datetime
import secrets
from collections import Counter
from typing import Any

from pynamodb.constants import ALL_OLD
from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.expressions.update import Action

from fleetlink.core.audit import AuditRecord
from fleetlink.core.entities import Page
from fleetlink.core.tasks.model import (
    CreateRecord,
    Execution,
    ExecutionStatus,
    IdempotencyKeyTaken,
    Task,
    TaskProgress,
    TaskState,
)
from fleetlink.core.tasks.output import closed_attempt
from fleetlink.core.tasks.ports import DueTimer
from fleetlink.core.tasks.transitions import execution_of
from fleetlink.store import keys
from fleetlink.store.audit import audit_item, audited_write
from fleetlink.store.base import TableItem, entity, transaction
from fleetlink.store.conditions import condition_failed, failed_conditions
from fleetlink.store.cursors import FILTERED_PAGE, CursorCodec, invalid_cursor, last_key_of
from fleetlink.store.errors import translates_store_errors
from fleetlink.store.task_output import attempt_item
from fleetlink.store.tasks import fanout as fanouts
from fleetlink.store.tasks.fanout import FANOUT_GRACE_S, FanoutWrites
from fleetlink.store.tasks.items import (
    _FINISHED_COUNTS,
    ExecutionItem,
    FanoutItem,
    IdempotencyItem,
    TaskItem,
    TaskOpenItem,
    TaskSlotsItem,
    _closed_actions,
    _count_item,
    _execution,
    _idempotency_item,
    _open_item,
    _task,
    _task_item,
)

# --- repository ----------------------------------------------------------------------------

#: How far back the task list looks (months), beyond the retention of finished tasks.
LIST_MONTHS = 13


#: A renewal changes only these fields of an execution, so it updates only them.
_LEASE_FIELDS = frozenset({"status", "lease_expires_at", "started_at", "updated_at"})


@translates_store_errors
class DynamoTaskRepository(FanoutWrites):
    def __init__(self, retention_days: int, cursors: CursorCodec | None = None) -> None:
        self._retention_s = retention_days * 86_400
        self._cursors = cursors or CursorCodec()

    # --- tasks -------------------------------------------------------------------------

    def create(
        self, task: Task, executions: list[Execution], record: CreateRecord | None, audit: AuditRecord
    ) -> bool:
        """The task, its idempotency record and counters in one transaction, never half of them.

        A fan-out of up to ``FANOUT_CHUNK`` executions is written in that transaction too. A larger
        one is first stored as chunks to write (inert until the task exists) and a fan-out marker
        that keeps the task from finishing; ``continue_fanout`` writes the chunks.
        """
        small = len(executions) <= fanouts.FANOUT_CHUNK
        if not small:
            self._put_chunks(task, executions)
        counts = (
            Counter(keys.task_shard(e.execution_id, e.fanout) for e in executions) if small else Counter()
        )
        try:
            with transaction() as tx:
                tx.save(_task_item(task), condition=TaskItem.pk.does_not_exist())
                tx.save(audit_item(audit))
                if record is not None:
                    tx.save(
                        _idempotency_item(record, task.created_at),
                        condition=IdempotencyItem.pk.does_not_exist(),
                        return_values=ALL_OLD,
                    )
                if task.max_concurrency:
                    tx.save(
                        TaskSlotsItem(
                            keys.task_pk(task.task_id), keys.TASK_SLOTS_SK, limit=task.max_concurrency
                        )
                    )
                for shard in range(keys.task_shards(task.execution_count)):
                    tx.save(_open_item(task.task_id, shard, counts[shard]))
                if small:
                    for execution in executions:
                        tx.save(self._execution_item(execution, version=None))
                else:
                    gsi4pk, gsi4sk = keys.fanout_due_keys(
                        task.task_id, task.created_at + FANOUT_GRACE_S * 1000
                    )
                    tx.save(
                        FanoutItem(
                            keys.task_pk(task.task_id),
                            keys.TASK_FANOUT_SK,
                            task_id=task.task_id,
                            gsi4pk=gsi4pk,
                            gsi4sk=gsi4sk,
                        )
                    )
        except TransactWriteError as error:
            if IdempotencyItem.__name__ in failed_conditions(error):
                raise IdempotencyKeyTaken(task.task_id) from error
            raise
        return small

    def find_create(self, actor: str, idempotency_key: str) -> CreateRecord | None:
        try:
            item = IdempotencyItem.get(
                keys.idempotency_pk(actor, idempotency_key), keys.SINGLETON_SK, consistent_read=True
            )
        except IdempotencyItem.DoesNotExist:
            return None
        return entity(CreateRecord, item, actor=actor, idempotency_key=idempotency_key)

    def get_task(self, task_id: str, *, consistent: bool = False) -> Task | None:
        try:
            return _task(TaskItem.get(keys.task_pk(task_id), keys.SINGLETON_SK, consistent_read=consistent))
        except TaskItem.DoesNotExist:
            return None

    def cancel_task(self, task_id: str, now_ms: int, audit: AuditRecord) -> bool:
        """The task's update, only while active (a task that finished meanwhile keeps its end and
        TTL), and its audit entry: one transaction."""
        task = TaskItem(keys.task_pk(task_id), keys.SINGLETON_SK)
        return audited_write(
            audit,
            lambda tx: tx.update(
                task,
                actions=[TaskItem.state.set(TaskState.CANCELLED.value), TaskItem.cancelled_at.set(now_ms)],
                condition=TaskItem.state == TaskState.ACTIVE.value,
            ),
        )

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
                # DynamoDB applies Limit before the filter: read real pages, stop at the items wanted
                page_size=FILTERED_PAGE if condition is not None else None,
                last_evaluated_key=last_key,
            )
            found += [_task(item) for item in results]
            last_key = results.last_evaluated_key
            if last_key is None:
                month -= 1
        next_cursor = self._cursors.seal(scope, {"m": month, "k": last_key}) if month >= oldest else None
        return Page[Task](items=found, cursor=next_cursor)

    def progress_of(self, tasks: list[Task]) -> dict[str, TaskProgress]:
        """Sums of each task's count shards, only the min(8, n) it has (BatchGetItem, 100 keys a request)."""
        shards = [
            (keys.task_open_pk(task.task_id, s), keys.SINGLETON_SK)
            for task in tasks
            for s in range(keys.task_shards(task.execution_count))
        ]
        progress = {task.task_id: TaskProgress() for task in tasks}
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

    def executions_of(self, task: Task) -> list[Execution]:
        """As gsi3 lists them, shard by shard: status and result; the rest comes from the task.

        Listed executions carry no version: re-read one (``get_execution``) before changing it.
        """
        items: list[ExecutionItem] = []
        for shard in range(keys.task_shards(task.execution_count)):
            items += ExecutionItem.by_task.query(keys.task_executions_pk(task.task_id, shard))
        items.sort(key=lambda item: item.gsi3sk)
        return [_listed(task, item) for item in items]

    def get_execution(self, execution_id: str) -> Execution | None:
        try:
            item = ExecutionItem.get(keys.execution_pk(execution_id), keys.SINGLETON_SK, consistent_read=True)
        except ExecutionItem.DoesNotExist:
            return None
        return _execution(item)

    def queued_for(self, agent_id: str, limit: int) -> list[Execution]:
        queued = ExecutionItem.gsi2sk < keys.LEASED_QUEUE_PREFIX
        items = ExecutionItem.queue.query(keys.queue_pk(agent_id), queued, limit=limit)
        return [_execution(item) for item in items]

    def leased_unstarted(self, agent_id: str, limit: int) -> list[Execution]:
        leased = ExecutionItem.gsi2sk.startswith(keys.LEASED_QUEUE_PREFIX)
        items = ExecutionItem.queue.query(keys.queue_pk(agent_id), leased, limit=limit)
        return [_execution(item) for item in items]

    def count_queued(self, agent_id: str) -> int:
        return ExecutionItem.queue.count(keys.queue_pk(agent_id))

    def transition(self, before: Execution, after: Execution) -> bool:
        """Conditional on the version read; a lease taken or given back moves a concurrency slot too.

        A lease renewal updates only the lease fields (and its timer); other changes put the item.
        Each write carries a token of its own: when botocore resends a write that was applied but
        whose answer was lost, the resend fails the version condition and the token read back says
        the write is ours, so it counts as done (a claim, renewal or result is never lost that way).
        """
        if (
            before.status.holds_lease
            and after.status.holds_lease
            and _changed(before, after) <= _LEASE_FIELDS
        ):
            return self._renew(before, after)
        item = self._execution_item(after, version=before.version)
        item.write_token = token = _write_token()
        slot = _slot_change(before, after)
        closes = after.status.terminal and not before.status.terminal
        ended = closed_attempt(before, after)
        try:
            if slot or closes or ended:
                # one transaction: a resend of it (same ClientRequestToken) is applied once
                with transaction() as tx:
                    tx.save(item)
                    if ended is not None:  # kept apart, so a retry never overwrites it
                        tx.save(attempt_item(ended, after.updated_at // 1000 + self._retention_s))
                    if slot:
                        slots = TaskSlotsItem(keys.task_pk(after.task_id), keys.TASK_SLOTS_SK)
                        room = TaskSlotsItem.active < TaskSlotsItem.limit if slot > 0 else None
                        tx.update(
                            slots,
                            actions=[TaskSlotsItem.active.add(slot)],
                            condition=room,
                            return_values=ALL_OLD,
                        )
                    if closes:
                        tx.update(_count_item(after), actions=_closed_actions(after))
            else:
                item.save()
        except (PutError, TransactWriteError) as error:
            if not _condition_failed(error):
                raise
            if not _applied(after.execution_id, token):
                return False
        if closes:
            self.settle(after)
        return True

    def _renew(self, before: Execution, after: Execution) -> bool:
        """UpdateItem of the lease fields and the timer, conditional on the version read (nothing
        when the lease already ends as late as it may)."""
        if not _changed(before, after):
            return True
        item = ExecutionItem(keys.execution_pk(after.execution_id), keys.SINGLETON_SK)
        item.version = before.version
        actions: list[Action] = [
            getattr(ExecutionItem, name).set(_attribute_value(after, name))
            for name in sorted(_changed(before, after))
        ]
        due_at = after.due_at()
        if due_at is not None and due_at != before.due_at():
            _, gsi4sk = keys.due_keys(DueTimer.LEASE.value, after.execution_id, due_at)
            actions.append(ExecutionItem.gsi4sk.set(gsi4sk))
        if before.status is ExecutionStatus.LEASED and after.status is not ExecutionStatus.LEASED:
            actions += [ExecutionItem.gsi2pk.remove(), ExecutionItem.gsi2sk.remove()]  # started
        actions.append(ExecutionItem.write_token.set(token := _write_token()))
        try:
            item.update(actions=actions)
        except UpdateError as error:
            if condition_failed(error):
                return _applied(after.execution_id, token)
            raise
        return True

    def settle(self, execution: Execution) -> None:
        """After a final execution was counted done (in its own write): the last one finishes the task.

        The shard is read consistently after the write, so of two closers of one shard the later
        one sees zero. A resent result calls it again, in case the finish failed the first time.
        """
        if not execution.status.terminal:
            return
        shard = keys.task_shard(execution.execution_id, execution.fanout)
        count = TaskOpenItem.get(
            keys.task_open_pk(execution.task_id, shard), keys.SINGLETON_SK, consistent_read=True
        )
        if count.open <= 0:
            self._finish_if_done(execution.task_id, execution.fanout, execution.updated_at, skip=shard)

    def _finish_if_done(self, task_id: str, fanout: int | None, now: int, skip: int | None = None) -> None:
        """Finish the task if no other count shard is open and no fan-out is still being written.

        The read is strongly consistent: each closer writes its shard before reading the others, so
        of two executions ending at once on different shards at least one sees both at zero.
        """
        others = [
            (keys.task_open_pk(task_id, s), keys.SINGLETON_SK)
            for s in range(keys.task_shards(fanout))
            if s != skip
        ]
        if fanout is None or fanout > fanouts.FANOUT_CHUNK:
            others.append((keys.task_pk(task_id), keys.TASK_FANOUT_SK))
        if others:
            for item in TableItem.batch_get(others, consistent_read=True):
                if isinstance(item, FanoutItem) or (isinstance(item, TaskOpenItem) and item.open > 0):
                    return
        task = TaskItem(keys.task_pk(task_id), keys.SINGLETON_SK)
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
                if not condition_failed(error):
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
            execution.task_id,
            keys.task_shard(execution.execution_id, execution.fanout),
            execution.agent_id,
            execution.execution_id,
        )
        item = ExecutionItem(
            keys.execution_pk(execution.execution_id),
            keys.SINGLETON_SK,
            task_type=execution.type,
            gsi3pk=gsi3pk,
            gsi3sk=gsi3sk,
            **values,
        )
        item.gsi5pk, item.gsi5sk = keys.agent_executions_keys(execution.agent_id, execution.execution_id)
        if execution.status is ExecutionStatus.QUEUED:
            item.gsi2pk, item.gsi2sk = keys.queue_keys(
                execution.agent_id, execution.priority, execution.execution_id
            )
        elif execution.status is ExecutionStatus.LEASED:
            item.gsi2pk, item.gsi2sk = keys.leased_queue_keys(execution.agent_id, execution.execution_id)
        due_at = execution.due_at()
        if due_at is not None:
            timer = DueTimer.LEASE if execution.status.holds_lease else DueTimer.DELIVERY
            item.gsi4pk, item.gsi4sk = keys.due_keys(timer.value, execution.execution_id, due_at)
        if execution.status.terminal:
            item.ttl = execution.updated_at // 1000 + self._retention_s
        if version is not None:
            item.version = version
        return item


def _changed(before: Execution, after: Execution) -> set[str]:
    return {
        name
        for name in Execution.model_fields
        if name != "version" and getattr(before, name) != getattr(after, name)
    }


def _listed(task: Task, item: ExecutionItem) -> Execution:
    projected = {
        name: value for name, value in item.attribute_values.items() if name in Execution.model_fields
    }
    base = execution_of(task, item.execution_id, item.agent_id).model_dump()
    return Execution.model_validate(base | projected | {"version": None})


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


def _write_token() -> str:
    return secrets.token_hex(8)


def _applied(execution_id: str, token: str) -> bool:
    """Whether the execution's last write is the one that carried ``token`` (a consistent read, made
    only after a failed condition)."""
    try:
        item = ExecutionItem.get(keys.execution_pk(execution_id), keys.SINGLETON_SK, consistent_read=True)
    except ExecutionItem.DoesNotExist:
        return False
    return item.write_token == token


def _condition_failed(error: PutError | TransactWriteError) -> bool:
    if isinstance(error, TransactWriteError):
        return bool(failed_conditions(error))
    return condition_failed(error)


def _attribute_value(execution: Execution, name: str) -> Any:
    """A field of the execution as its item attribute holds it."""
    value = getattr(execution, name)
    if name == "status":
        return value.value
    if name == "output_objects" and value is not None:
        return [found.model_dump(mode="json") for found in value]
    return value
