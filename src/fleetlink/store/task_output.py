"""Attempts and live output of executions on the single table (adapter of the output port).

Under an execution's partition ``EXE#<id>``: ``ATT#<attempt>`` per ended attempt (written with the
transition that ends it), ``OUT#<attempt>#<seq>`` per live output chunk and ``OUTHEAD#<attempt>``,
the last chunk applied (its number and digest) that keeps chunks in order and recognises a resend.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError

from fleetlink.core.errors import Conflict
from fleetlink.core.tasks.output import MAX_SEQ, AppendOutput, Attempt, OutputChunk
from fleetlink.store import keys
from fleetlink.store.base import TableItem, attributes_of, entity
from fleetlink.store.errors import translates_store_errors


class AttemptItem(attributes_of(Attempt), TableItem, discriminator="execution_attempt"):  # type: ignore[misc]
    """One ended attempt: how it ended and its inline output (stdout and stderr apart)."""

    output_truncated = NumberAttribute(default=0)  # stored as 0 or 1, not as a boolean
    stderr_truncated = NumberAttribute(default=0)


class OutputChunkItem(attributes_of(OutputChunk), TableItem, discriminator="output_chunk"):  # type: ignore[misc]
    digest = UnicodeAttribute()


class OutputHeadItem(TableItem, discriminator="output_head"):
    seq = NumberAttribute()
    digest = UnicodeAttribute()


def attempt_item(attempt: Attempt, ttl_s: int) -> AttemptItem:
    values: dict[str, Any] = attempt.model_dump(mode="json")
    values["output_truncated"] = int(attempt.output_truncated)
    values["stderr_truncated"] = int(attempt.stderr_truncated)
    return AttemptItem(
        keys.execution_pk(attempt.execution_id), keys.attempt_sk(attempt.attempt), ttl=ttl_s, **values
    )


def _live(item: TableItem, now_ms: int) -> bool:
    """TTL deletes late: an item past its TTL is gone already."""
    return item.ttl is None or item.ttl > now_ms // 1000


@translates_store_errors
class DynamoOutputRepository:
    def append(self, execution_id: str, command: AppendOutput, now_ms: int, ttl_s: int) -> bool:
        """Move the head from ``seq - 1`` to ``seq`` (conditional UpdateItem), then put the chunk.

        A resend whose head move was applied (the answer lost, or the chunk's put failed) finds the
        head at ``seq`` with its own digest: the chunk is put again (the same item) and it is a
        duplicate. Two writes, no transaction: 1 WCU for the head, 1 per KB of chunk.
        """
        pk = keys.execution_pk(execution_id)
        digest = command.digest()
        head = OutputHeadItem(pk, keys.output_head_sk(command.attempt))
        follows = (
            OutputHeadItem.seq == command.seq - 1 if command.seq > 1 else OutputHeadItem.pk.does_not_exist()
        )
        applied = True
        try:
            head.update(
                actions=[
                    OutputHeadItem.seq.set(command.seq),
                    OutputHeadItem.digest.set(digest),
                    OutputHeadItem.ttl.set(ttl_s),
                    OutputHeadItem.kind.set(OutputHeadItem),
                ],
                condition=follows,
            )
        except UpdateError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            applied = False
            if not self._resend(pk, command, digest):
                return False
        parts = [part.model_dump() for part in command.parts]
        OutputChunkItem(
            pk,
            keys.output_chunk_sk(command.attempt, command.seq),
            attempt=command.attempt,
            seq=command.seq,
            parts=parts,
            digest=digest,
            received_at=now_ms,
            ttl=ttl_s,
        ).save()
        return applied

    def _resend(self, pk: str, command: AppendOutput, digest: str) -> bool:
        """After a refused head move: True when the chunk must be put again (the head is at it, with
        its digest), False when it is stored already; Conflict otherwise."""
        try:
            head = OutputHeadItem.get(pk, keys.output_head_sk(command.attempt), consistent_read=True)
        except OutputHeadItem.DoesNotExist:
            raise Conflict(
                f"chunk {command.seq} is out of order: the next is 1", code="output-out-of-order", expected=1
            ) from None
        at = int(head.seq)
        if at == command.seq and head.digest == digest:
            return True
        if at < command.seq:
            raise Conflict(
                f"chunk {command.seq} is out of order: the next is {at + 1}",
                code="output-out-of-order",
                expected=at + 1,
            )
        try:
            stored = OutputChunkItem.get(
                pk, keys.output_chunk_sk(command.attempt, command.seq), consistent_read=True
            )
        except OutputChunkItem.DoesNotExist:
            stored = None
        if stored is not None and stored.digest == digest:
            return False
        raise Conflict(
            f"chunk {command.seq} was already sent with other content (the next is {at + 1})",
            code="output-seq-taken",
            expected=at + 1,
        )

    def chunks(
        self, execution_id: str, attempt: int, after: int, limit: int, now_ms: int
    ) -> list[OutputChunk]:
        """The attempt's chunks after ``after``, in order (one Query; eventually consistent is enough:
        the reader polls on from its cursor)."""
        if after >= MAX_SEQ:
            return []
        results = OutputChunkItem.query(
            keys.execution_pk(execution_id),
            OutputChunkItem.sk.between(
                keys.output_chunk_sk(attempt, after + 1), keys.output_chunk_sk(attempt, MAX_SEQ)
            ),
            limit=limit,
        )
        return [entity(OutputChunk, item) for item in results if _live(item, now_ms)]

    def attempts(self, execution_id: str, now_ms: int) -> list[Attempt]:
        results = AttemptItem.query(
            keys.execution_pk(execution_id), AttemptItem.sk.startswith(keys.ATTEMPT_PREFIX)
        )
        return [entity(Attempt, item) for item in results if _live(item, now_ms)]
