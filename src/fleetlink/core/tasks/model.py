"""Tasks and their executions (one per targeted agent): entities, commands, pure state transitions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.entities import Strict, TagKey, TagValue
from fleetlink.core.ids import IdPrefix, id_pattern
from fleetlink.core.json_values import MAX_VALUE_DEPTH, JsonObject
from fleetlink.core.numbers import Count, EpochMs, StrictInt

SHELL = "shell"
#: Output kept inline per stream of an attempt (UTF-8 bytes): head and tail (core/tasks/output.py).
OUTPUT_INLINE_LIMIT = 16 * 1024 + 128
MAX_INPUT_BYTES = 64 * 1024
#: A lease never outlives the task's timeout by more than this.
LEASE_GRACE_S = 60
MAX_EXECUTIONS_PER_TASK = 10_000
#: An Idempotency-Key: visible ASCII, as in the IETF draft's examples (UUIDs, ULIDs, hashes).
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"

AgentId = Annotated[str, StringConstraints(pattern=id_pattern(IdPrefix.AGENT))]
ExecutionId = Annotated[str, StringConstraints(pattern=id_pattern(IdPrefix.EXECUTION))]
TaskType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]


class ExecutionStatus(StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self not in (ExecutionStatus.QUEUED, ExecutionStatus.LEASED, ExecutionStatus.RUNNING)

    @property
    def holds_lease(self) -> bool:
        return self in (ExecutionStatus.LEASED, ExecutionStatus.RUNNING)

    @property
    def is_error(self) -> bool:
        """What a task's ``max_errors`` counts: a final failure or timeout."""
        return self in (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT)


class TaskState(StrEnum):
    ACTIVE = "active"
    FINISHED = "finished"
    CANCELLED = "cancelled"


# --- commands ------------------------------------------------------------------------------


class TaskTargets(Strict):
    agent_ids: list[AgentId] = Field(default_factory=list, max_length=1000)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=10, description="All must match")

    @model_validator(mode="after")
    def _some_target(self) -> TaskTargets:
        if not self.agent_ids and not self.tags:
            raise ValueError("name at least one agent id or tag")
        return self


class Verbatim(DeferredModel):
    """Strict, and strings kept as sent (commands and outputs are not ours to trim)."""

    model_config = ConfigDict(extra="forbid")


class CreateTask(Verbatim):
    type: TaskType = SHELL
    command: Annotated[str, StringConstraints(min_length=1, max_length=16_384)] | None = None
    input: JsonObject | None = Field(
        default=None, description=f"For non-shell types; at most {MAX_VALUE_DEPTH} levels deep"
    )
    targets: TaskTargets
    priority: StrictInt = Field(default=0, ge=-1000, le=1000, description="Higher runs first")
    timeout_seconds: StrictInt = Field(default=300, ge=1, le=86_400)
    max_retries: StrictInt = Field(default=0, ge=0, le=10)
    delivery_timeout_seconds: StrictInt = Field(default=86_400, ge=60, le=7 * 86_400)
    max_concurrency: StrictInt | None = Field(default=None, ge=1, le=MAX_EXECUTIONS_PER_TASK)
    max_errors: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_EXECUTIONS_PER_TASK,
        description="Error budget: once this many executions failed or timed out (after their retries), "
        "the task's still queued executions are cancelled instead of dispatched",
    )

    def request_digest(self) -> str:
        """Identifies this exact request, so a retry under the same idempotency key is recognised."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:32]

    @model_validator(mode="after")
    def _payload_fits_type(self) -> CreateTask:
        if self.type == SHELL:
            if self.command is None or not self.command.strip():
                raise ValueError("a shell task needs a non-blank command")
            if self.input is not None:
                raise ValueError("a shell task takes a command, not input")
        elif self.command is not None:
            raise ValueError(f"a {self.type} task takes input, not a command")
        if self.input is not None and len(json.dumps(self.input)) > MAX_INPUT_BYTES:
            raise ValueError(f"input is over {MAX_INPUT_BYTES} bytes as JSON")
        return self


class ClaimExecutions(Strict):
    max: StrictInt = Field(default=1, ge=1, le=10)
    running_executions: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=100
    )


Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
#: A complete output kept in S3 is at most this large, compressed (a day of a chatty command).
MAX_OUTPUT_OBJECT_BYTES = 5 * 1024**3


class OutputObject(Verbatim):
    """A complete output stream of an attempt, gzip-compressed, kept in the output bucket under
    ``outputs/<execution>/<attempt>/<stream>.gz`` (the key is built in ``store/keys.py``)."""

    stream: Literal["stdout", "stderr"]
    size: StrictInt = Field(ge=1, le=MAX_OUTPUT_OBJECT_BYTES, description="The object's bytes (compressed)")
    sha256: Sha256Hex = Field(description="SHA-256 of the object (compressed), lowercase hex")
    bytes: StrictInt = Field(ge=0, le=2**53, description="The stream's bytes before compression")


class ExecutionResult(Verbatim):
    attempt: StrictInt = Field(ge=1, le=1000)
    status: Literal["succeeded", "failed", "timed_out"]
    exit_code: StrictInt | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    output: str | None = Field(default=None, description="stdout (head and tail when long)")
    output_truncated: bool = Field(default=False, strict=True)
    output_bytes: Count | None = None
    stderr: str | None = Field(default=None, description="stderr (head and tail when long)")
    stderr_truncated: bool = Field(default=False, strict=True)
    stderr_bytes: Count | None = None
    error: Annotated[str, StringConstraints(max_length=4096)] | None = None
    started_at: EpochMs
    finished_at: EpochMs
    output_objects: list[OutputObject] | None = Field(
        default=None,
        max_length=2,
        description="Complete outputs the agent uploads to the output bucket after this report "
        "(POST .../output-uploads hands it the links), at most one per stream",
    )

    @model_validator(mode="after")
    def _ordered(self) -> ExecutionResult:
        if self.finished_at < self.started_at:
            raise ValueError("finished_at is before started_at")
        streams = [found.stream for found in self.output_objects or ()]
        if len(set(streams)) != len(streams):
            raise ValueError("output_objects names a stream twice")
        for name in ("output", "stderr", "error"):
            text = getattr(self, name)
            if text is not None and not text.isascii():
                try:
                    text.encode()
                except UnicodeEncodeError:
                    raise ValueError(f"{name} is not text: it holds a lone surrogate") from None
        return self

    def digest(self) -> str:
        """Identifies this exact result, so a resend is recognised (a result without output objects
        keeps the digest it had before they existed)."""
        exclude = {"output_objects"} if self.output_objects is None else None
        return hashlib.sha256(self.model_dump_json(exclude=exclude).encode()).hexdigest()[:32]


# --- entities ------------------------------------------------------------------------------


class Task(DeferredModel):
    task_id: str
    type: str
    command: str | None = None
    input: dict[str, Any] | None = None
    targets: TaskTargets
    priority: int
    timeout_seconds: int
    max_retries: int
    delivery_timeout_seconds: int
    max_concurrency: int | None = None
    max_errors: int | None = None
    created_at: int
    created_by: str
    execution_count: int
    state: TaskState = TaskState.ACTIVE
    finished_at: int | None = None
    cancelled_at: int | None = None


class TaskProgress(DeferredModel):
    """How far a task got, as kept in its open-count shards (no execution is read)."""

    open: int = 0
    #: Finished executions per final status.
    finished: dict[str, int] = Field(default_factory=dict)


class Execution(DeferredModel):
    """One task on one agent. Carries what the agent needs, so a claim reads nothing else."""

    execution_id: str
    task_id: str
    agent_id: str
    type: str
    command: str | None = None
    input: dict[str, Any] | None = None
    priority: int
    timeout_seconds: int
    max_retries: int
    delivery_timeout_seconds: int
    max_concurrency: int | None = None
    max_errors: int | None = None
    fanout: int | None = Field(default=None, description="How many executions its task has")
    status: ExecutionStatus = ExecutionStatus.QUEUED
    attempt: int = 1
    created_at: int
    updated_at: int
    deliver_by: int
    leased_at: int | None = None
    lease_expires_at: int | None = None
    cancel_requested: bool = False
    started_at: int | None = None
    finished_at: int | None = None
    exit_code: int | None = None
    output: str | None = None
    output_truncated: bool = False
    output_bytes: int | None = None
    stderr: str | None = None
    stderr_truncated: bool = False
    stderr_bytes: int | None = None
    output_objects: list[OutputObject] | None = None
    error: str | None = None
    #: How the last attempt ended (an execution requeued for a retry is queued again).
    result_status: str | None = None
    result_attempt: int | None = None
    result_digest: str | None = None
    version: int | None = None

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def due_at(self) -> int | None:
        """When a timer must look at it: the lease end while leased, the delivery deadline while queued."""
        if self.status.holds_lease:
            return self.lease_expires_at
        if self.status is ExecutionStatus.QUEUED:
            return self.deliver_by
        return None


@dataclass(frozen=True)
class CreateRecord:
    """What a create under an idempotency key did: a retry with the same key gets the same answer."""

    actor: str
    idempotency_key: str
    request_digest: str
    task_id: str
    agent_ids: list[str]


class IdempotencyKeyTaken(Exception):
    """Another create under the same idempotency key was stored first."""
