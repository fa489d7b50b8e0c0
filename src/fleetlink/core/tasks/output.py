"""Output of executions: the inline head-and-tail copy, every attempt kept, live output chunks.

An attempt's stdout and stderr are kept apart. Inline (in DynamoDB) each keeps its first and last
``INLINE_HEAD_BYTES``/``INLINE_TAIL_BYTES`` (the end is where failures are). While an attempt runs,
the agent appends its new output as numbered chunks (``seq`` 1, 2, ... per attempt, each naming its
streams); operators read them from a cursor.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

from pydantic import Field, StringConstraints, model_validator

from fleetlink.core.access import Caller, require_own
from fleetlink.core.clock import Clock
from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.entities import Strict
from fleetlink.core.errors import Conflict, NotFound
from fleetlink.core.numbers import StrictInt
from fleetlink.core.tasks.model import LEASE_GRACE_S, Execution, ExecutionStatus, OutputObject, Verbatim
from fleetlink.core.tasks.ports import TaskRepository

INLINE_HEAD_BYTES = 8 * 1024
INLINE_TAIL_BYTES = 8 * 1024
#: What an inline copy may hold: head, tail and the line that says how much was left out between.
INLINE_LIMIT = INLINE_HEAD_BYTES + INLINE_TAIL_BYTES + 128
#: New output one append request carries at most (UTF-8 bytes over all its parts).
CHUNK_MAX_BYTES = 64 * 1024
#: Parts in one append (the agent batches what accumulated per stream).
CHUNK_MAX_PARTS = 16
#: Chunks of one attempt at most (a chunk a second for a day).
MAX_SEQ = 86_400 + 1_000
#: Chunks an operator reads per request at most.
READ_LIMIT = 100

Stream = Literal["stdout", "stderr"]


def omitted_line(count: int) -> str:
    return f"\n[... {count} bytes omitted ...]\n"


def head_and_tail(data: bytes, total: int | None = None) -> tuple[str, bool, int]:
    """``data`` as kept inline: whole when it fits, else its head and tail with a line between that
    says how many bytes were left out. ``total``: how many bytes the output really had (``data``
    may already be a head and tail of it). Returns (text, truncated, total bytes)."""
    size = max(total or 0, len(data))
    if len(data) <= INLINE_HEAD_BYTES + INLINE_TAIL_BYTES:
        if size == len(data):
            return data.decode("utf-8", errors="replace"), False, size
        middle = len(data) // 2  # a head and tail cut elsewhere: keep what came, say what is missing
        head, tail = data[:middle], data[middle:]
    else:
        head, tail = data[:INLINE_HEAD_BYTES], data[-INLINE_TAIL_BYTES:]
    omitted = size - len(head) - len(tail)
    text = (
        head.decode("utf-8", errors="ignore") + omitted_line(omitted) + tail.decode("utf-8", errors="ignore")
    )
    return text, True, size


def inline_text(text: str | None, total: int | None) -> tuple[str | None, bool, int | None]:
    """What the server keeps of an output the agent sent (already head and tail, or whole)."""
    if text is None:
        return None, bool(total), total
    raw = text.encode()
    if len(raw) <= INLINE_LIMIT:
        return text, (total or len(raw)) > len(raw), max(total or 0, len(raw))
    kept, _, size = head_and_tail(raw, total)
    return kept, True, size


# --- attempts ----------------------------------------------------------------------------------


class Attempt(DeferredModel):
    """One attempt of an execution, as it ended (kept when a retry runs the execution again)."""

    execution_id: str
    attempt: int
    status: ExecutionStatus
    exit_code: int | None = None
    output: str | None = Field(default=None, description="stdout: head and tail")
    output_truncated: bool = False
    output_bytes: int | None = None
    stderr: str | None = Field(default=None, description="stderr: head and tail")
    stderr_truncated: bool = False
    stderr_bytes: int | None = None
    output_objects: list[OutputObject] | None = Field(
        default=None, description="Complete outputs in the output bucket (`fleetlink tasks output`)"
    )
    error: str | None = None
    started_at: int | None = None
    finished_at: int | None = None


class AttemptList(DeferredModel):
    execution_id: str
    status: ExecutionStatus
    attempt: int = Field(description="The current (or last) attempt")
    attempts: list[Attempt] = Field(description="Every attempt, oldest first")


def closed_attempt(before: Execution, after: Execution) -> Attempt | None:
    """The attempt ``after`` ends (a result, a lost lease, a cancel), or None when none ends."""
    if not before.status.holds_lease:
        return None
    if after.status.holds_lease and after.attempt == before.attempt:
        return None
    status = ExecutionStatus(after.result_status) if after.result_status else after.status
    return Attempt(
        execution_id=after.execution_id,
        attempt=before.attempt,
        status=status,
        **after.model_dump(include=_ATTEMPT_FIELDS),
    )


#: What an execution says of its current (or last) attempt.
_ATTEMPT_FIELDS = {
    "exit_code",
    "output",
    "output_truncated",
    "output_bytes",
    "stderr",
    "stderr_truncated",
    "stderr_bytes",
    "output_objects",
    "error",
    "started_at",
    "finished_at",
}


# --- live output -------------------------------------------------------------------------------


class OutputPart(Verbatim):
    stream: Stream
    data: Annotated[str, StringConstraints(min_length=1, max_length=CHUNK_MAX_BYTES)]


class AppendOutput(Strict):
    """New output of a running attempt: chunk ``seq`` (1, 2, ... with no gap), its parts in order."""

    attempt: StrictInt = Field(ge=1, le=1000)
    seq: StrictInt = Field(ge=1, le=MAX_SEQ)
    parts: list[OutputPart] = Field(min_length=1, max_length=CHUNK_MAX_PARTS)

    @model_validator(mode="after")
    def _fits(self) -> AppendOutput:
        size = sum(len(part.data.encode()) for part in self.parts)
        if size > CHUNK_MAX_BYTES:
            raise ValueError(f"a chunk carries at most {CHUNK_MAX_BYTES} bytes of output ({size} sent)")
        return self

    def digest(self) -> str:
        """Identifies this exact chunk, so a resend is recognised."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:32]


class OutputChunk(DeferredModel):
    """A stored chunk, as operators read it."""

    attempt: int
    seq: int
    parts: list[OutputPart]
    received_at: int


class ChunkAck(DeferredModel):
    execution_id: str
    attempt: int
    seq: int
    status: Literal["applied", "duplicate"]


def require_appendable(execution: Execution, command: AppendOutput, now: int) -> None:
    """An attempt takes output while it holds its lease and its deadline has not passed."""
    if execution.attempt != command.attempt or not execution.status.holds_lease:
        raise Conflict(
            f"attempt {command.attempt} is not running (execution is {execution.status.value}, "
            f"attempt {execution.attempt})",
            code="attempt-not-running",
        )
    deadline = (execution.leased_at or now) + (execution.timeout_seconds + LEASE_GRACE_S) * 1000
    if now > deadline:
        raise Conflict("the attempt's deadline has passed", code="output-deadline-passed")


def require_attempt(execution: Execution, attempt: int | None) -> int:
    """The attempt asked for (default: the current one), if it exists."""
    chosen = attempt or execution.attempt
    if chosen > execution.attempt:
        raise NotFound(
            f"execution {execution.execution_id} has no attempt {chosen}", code="attempt-not-found"
        )
    return chosen


class OutputPage(DeferredModel):
    """Chunks of one attempt after a cursor, and whether more can come."""

    execution_id: str
    attempt: int
    status: ExecutionStatus = Field(description="The execution's status now")
    chunks: list[OutputChunk]
    next_after: int = Field(description="Pass as ?after= to read on")
    done: bool = Field(description="The attempt has ended: no chunk will be added")


# --- port and use cases -------------------------------------------------------------------------


class OutputRepository(Protocol):
    """Where attempts and live output are kept (adapter: fleetlink.store.task_output)."""

    def append(self, execution_id: str, command: AppendOutput, now_ms: int, ttl_s: int) -> bool:
        """Store chunk ``command.seq`` if it is the next one: True; a resend of it: False.
        Raises Conflict when it is out of order or its number was taken by other content."""
        ...

    def chunks(
        self, execution_id: str, attempt: int, after: int, limit: int, now_ms: int
    ) -> list[OutputChunk]: ...

    def attempts(self, execution_id: str, now_ms: int) -> list[Attempt]: ...


@dataclass(frozen=True)
class OutputService:
    tasks: TaskRepository
    output: OutputRepository
    clock: Clock
    retention_days: int

    @property
    def retention_s(self) -> int:
        return self.retention_days * 86_400

    def _execution(self, execution_id: str) -> Execution:
        execution = self.tasks.get_execution(execution_id)
        if execution is None:
            raise NotFound(f"no execution {execution_id}", code="execution-not-found")
        return execution

    def append(self, caller: Caller, execution_id: str, command: AppendOutput) -> ChunkAck:
        """Keep a chunk of a running attempt's output, in order; a resend is answered as the first."""
        execution = self._execution(execution_id)
        require_own(caller, execution.agent_id)
        now = self.clock.now_ms()
        require_appendable(execution, command, now)
        # kept as long as the execution will be: its deadline, then the task retention
        ttl_s = now // 1000 + execution.timeout_seconds + LEASE_GRACE_S + self.retention_s
        applied = self.output.append(execution_id, command, now, ttl_s)
        return ChunkAck(
            execution_id=execution_id,
            attempt=command.attempt,
            seq=command.seq,
            status="applied" if applied else "duplicate",
        )

    def read(self, execution_id: str, attempt: int | None, after: int, limit: int) -> OutputPage:
        """An attempt's chunks after ``after`` (the current attempt unless named)."""
        execution = self._execution(execution_id)
        chosen = require_attempt(execution, attempt)
        # read the state first: a chunk stored before the attempt ended is then always in the page
        done = chosen < execution.attempt or not execution.status.holds_lease
        found = self.output.chunks(execution_id, chosen, after, limit, self.clock.now_ms())
        next_after = found[-1].seq if found else after
        return OutputPage(
            execution_id=execution_id,
            attempt=chosen,
            status=execution.status,
            chunks=found,
            next_after=next_after,
            done=done and len(found) < limit,
        )

    def attempts(self, execution_id: str) -> tuple[Execution, list[Attempt]]:
        """Every ended attempt, oldest first, and the execution as it is now."""
        execution = self._execution(execution_id)
        return execution, self.output.attempts(execution_id, self.clock.now_ms())

    def attempt(self, execution_id: str, attempt: int) -> Attempt:
        """One attempt: an ended one as kept, the current one as the execution has it now."""
        execution, ended = self.attempts(execution_id)
        for found in ended:
            if found.attempt == attempt:
                return found
        if attempt == execution.attempt:
            return current_attempt(execution)
        raise NotFound(f"execution {execution_id} has no attempt {attempt}", code="attempt-not-found")


def current_attempt(execution: Execution) -> Attempt:
    """The attempt under way (or the last one, if it ended without a retry)."""
    if execution.status is ExecutionStatus.QUEUED:  # not started: what the execution holds is older
        return Attempt(
            execution_id=execution.execution_id, attempt=execution.attempt, status=execution.status
        )
    return Attempt(
        execution_id=execution.execution_id,
        attempt=execution.attempt,
        status=execution.status,
        **execution.model_dump(include=_ATTEMPT_FIELDS),
    )
