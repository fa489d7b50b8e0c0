"""Large fan-outs: executions written in chunks after their task, resumed by the fan-out duty."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Any, TypeVar

from pynamodb.exceptions import DeleteError, PynamoDBException, TransactWriteError

from fleetlink.core.errors import Throttled
from fleetlink.core.tasks.model import (
    Execution,
    Task,
    TaskState,
)
from fleetlink.core.tasks.ports import DueTimer
from fleetlink.core.tasks.transitions import cancel, execution_of
from fleetlink.store import contention, keys
from fleetlink.store.base import table_connection, table_name, transaction
from fleetlink.store.conditions import condition_failed, failed_conditions
from fleetlink.store.errors import translate, translates_store_errors
from fleetlink.store.tasks.items import ExecutionItem, FanoutChunkItem, FanoutItem, TaskOpenItem, _open_item

#: Executions per transaction: a fan-out this small is written with its task, a larger one in
#: chunks of this many (with the chunk's removal and its counts: at most 1 + 25 + 8 actions,
#: and 25 executions of at most 80 KB stay far below the 4 MB a transaction may carry).
FANOUT_CHUNK = 25
#: A fan-out's writer holds it this long past its budget before the fan-out duty takes over.
FANOUT_GRACE_S = 30


#: Chunks of a fan-out are removed by TTL after this long (left only by a create that failed).
FANOUT_CHUNK_RETENTION_S = 7 * 86_400
#: Rounds of BatchWriteItem for the items it left unprocessed, with full-jitter backoff between.
BATCH_WRITE_ROUNDS = 6


def _hand_over(marker: FanoutItem, task_id: str, now_ms: int) -> bool:
    """Make an unfinished fan-out due now, so the next duty run resumes it (best effort: else it
    becomes due when this writer's hold ends). Always False: the fan-out is unfinished."""
    try:
        marker.update(actions=[FanoutItem.gsi4sk.set(keys.fanout_due_keys(task_id, now_ms)[1])])
    except PynamoDBException as error:
        if translate(error) is None:
            raise
    return False


def _batch_put(items: list[dict[str, Any]]) -> None:
    """BatchWriteItem, 25 a request; what DynamoDB leaves unprocessed is resent after a jittered
    backoff, a bounded number of rounds, then a 429 (the items are inert until referenced)."""
    connection = table_connection().connection
    table = table_name()
    pending = items
    for round_ in range(BATCH_WRITE_ROUNDS):
        unprocessed: list[dict[str, Any]] = []
        for group in _batched(pending, 25):
            data = connection.batch_write_item(table, put_items=list(group))
            unprocessed += [r["PutRequest"]["Item"] for r in data.get("UnprocessedItems", {}).get(table, [])]
        if not unprocessed:
            return
        pending = unprocessed
        time.sleep(contention.backoff_s(round_ + 1))
    raise Throttled("the store is busy; retry shortly", code="store-busy", retry_after_s=1)


T = TypeVar("T")


def _batched(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@translates_store_errors
class FanoutWrites(ABC):
    """The writes of a large fan-out: its executions in chunks, each written with its counts."""

    @abstractmethod
    def get_task(self, task_id: str, *, consistent: bool = False) -> Task | None: ...

    @abstractmethod
    def _finish_if_done(
        self, task_id: str, fanout: int | None, now: int, skip: int | None = None
    ) -> None: ...

    @abstractmethod
    def _execution_item(self, execution: Execution, version: int | None) -> ExecutionItem: ...

    def _put_chunks(self, task: Task, executions: list[Execution]) -> None:
        """The executions to write, in chunks (BatchWriteItem; unprocessed items resent with backoff)."""
        ttl = task.created_at // 1000 + FANOUT_CHUNK_RETENTION_S
        chunks = [
            FanoutChunkItem(
                keys.task_pk(task.task_id),
                keys.fanout_chunk_sk(number),
                executions=[[e.execution_id, e.agent_id] for e in part],
                ttl=ttl,
            )
            for number, part in enumerate(_batched(executions, FANOUT_CHUNK))
        ]
        _batch_put([chunk.serialize() for chunk in chunks])

    def continue_fanout(self, task_id: str, now_ms: int, budget_s: float) -> bool:
        """Write the remaining chunks, each in one transaction with its counts; once none remain,
        remove the marker and finish the task if every execution already ended.

        Each chunk's removal is conditional, so two writers never write a chunk twice. Contention
        or throttling stops the run (the fan-out duty resumes it), never the caller's request.
        """
        deadline = time.monotonic() + budget_s
        try:
            marker = FanoutItem.get(keys.task_pk(task_id), keys.TASK_FANOUT_SK, consistent_read=True)
        except FanoutItem.DoesNotExist:
            return True
        try:
            _, due = keys.fanout_due_keys(task_id, now_ms + int((budget_s + FANOUT_GRACE_S) * 1000))
            marker.update(actions=[FanoutItem.gsi4sk.set(due)])
            task = self.get_task(task_id, consistent=True)
            while task is not None:
                chunks = list(
                    FanoutChunkItem.query(
                        keys.task_pk(task_id),
                        FanoutChunkItem.sk.startswith(keys.TASK_FANOUT_CHUNK_PREFIX),
                        consistent_read=True,
                        limit=10,
                    )
                )
                if not chunks:
                    break
                for chunk in chunks:
                    if time.monotonic() >= deadline:
                        return _hand_over(marker, task_id, now_ms)
                    self._write_chunk(task, chunk, now_ms)
            marker.delete(condition=FanoutItem.pk.exists())
        except DeleteError as error:
            if condition_failed(error):
                return True  # another writer finished it
            raise
        except PynamoDBException as error:
            if translate(error) is None:
                raise
            return _hand_over(marker, task_id, now_ms)
        if task is not None:
            self._finish_if_done(task_id, task.execution_count, now_ms)
        return True

    def _write_chunk(self, task: Task, chunk: FanoutChunkItem, now_ms: int) -> None:
        executions = [
            execution_of(task, execution_id, agent_id) for execution_id, agent_id in chunk.executions
        ]
        if task.state is not TaskState.ACTIVE:
            executions = [cancel(e, now_ms) for e in executions]
        counts = Counter(
            keys.task_shard(e.execution_id, e.fanout) for e in executions if not e.status.terminal
        )
        try:
            with transaction() as tx:
                tx.delete(chunk, condition=FanoutChunkItem.pk.exists())
                for execution in executions:
                    tx.save(self._execution_item(execution, version=None))
                for shard, count in counts.items():
                    tx.update(_open_item(task.task_id, shard, 0), actions=[TaskOpenItem.open.add(count)])
        except TransactWriteError as error:
            if not failed_conditions(error):
                raise  # else another writer wrote this chunk

    def due_fanouts(self, now_ms: int, limit: int) -> list[str]:
        found: list[str] = []
        for shard in range(keys.LIST_SHARDS):
            results = FanoutItem.due.query(
                keys.due_pk(DueTimer.FANOUT.value, shard),
                FanoutItem.gsi4sk < f"{now_ms + 1:013d}",
                limit=limit,
            )
            found += [item.pk.removeprefix("TASK#") for item in results]
        return found
