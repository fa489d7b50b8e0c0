"""The tasks service of the agent daemon: claim executions, run them, report how they ended, survive
restarts.

Its round (:meth:`TasksService.step`) reports what finished and claims while the last heartbeat said
work is pending; the heartbeat's answer also names executions to stop. Each execution runs in a
worker thread of its own, at most ``concurrency`` at a time. Every execution is written to the local
store when it is claimed (before it starts) and when it finishes (before it is reported), so an agent
restarted mid-task reports the outcome instead of losing it.

Shell tasks run ``/bin/sh -c COMMAND`` in a process group of their own (agent/process.py): a timeout
or cancel stops the whole group, and anything a task left running in its group ends with it. Other
task types run a handler from a :class:`~fleetlink.agent.tasks.handlers.HandlerRegistry`
(``handlers``): in a process of its own under the execution's supervisor when the registry knows it
by reference, else in a thread; running one execution is ``execution``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from fleetlink.agent.daemon import AgentService
from fleetlink.agent.db import now_ms
from fleetlink.agent.disk import takes_no_writes
from fleetlink.agent.process import (
    DRAIN_GRACE_S,
    KILL_GRACE_S,
    Control,
    OutputCollector,
    is_our_group,
    kill_group,
)
from fleetlink.agent.tasks.execution import OUTPUT_CAP_BYTES, Outcome, execution_env, run_handler, run_shell
from fleetlink.agent.tasks.handlers import SHELL, HandlerRegistry
from fleetlink.agent.tasks.output import OutputApi, OutputStreamer
from fleetlink.agent.tasks.reporting import ResultReporter
from fleetlink.agent.tasks.store import (
    AgentStore,
    ExecutionRecord,
    ExecutionResult,
    ResultStatus,
    RowStatus,
    StoreError,
)
from fleetlink.agent.tasks.supervised import (
    declare_complete_output,
    prune_runs,
    recover_supervised,
    run_supervised,
    runs_dir_of,
    supervises,
)
from fleetlink.agent.tasks.uploads import OutputUploader
from fleetlink.client.http import FleetlinkClientError
from fleetlink.contract.agents import HeartbeatAck
from fleetlink.contract.tasks import Claimed, Lease, ResultRecorded, ResultReport
from fleetlink.core.tasks.output_objects import OutputUploads

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
#: The server renews at most this many leases per heartbeat.
MAX_CONCURRENCY = 100
#: The server hands out at most this many executions per claim.
CLAIM_BATCH = 10


#: Output sent with a result (the server keeps 16 KiB of it inline).
SEND_OUTPUT_BYTES = 64 * 1024
MAX_ERROR_CHARS = 4096
#: Reported executions older than this are pruned from the local store at start-up.
KEEP_REPORTED_MS = 7 * 24 * 3600 * 1000

#: What the local store keeps of a lease.
_KEPT_OF_LEASE = {"execution_id", "attempt", "task_id", "type", "command", "input", "timeout_seconds"}

CANCELLED = "cancelled"
STOPPED = "agent stopped while the task ran"
RESTARTED = "agent restarted while the task ran"
NEVER_STARTED = "agent restarted before the task started"


class TasksApi(Protocol):
    """The calls the tasks service makes (FleetlinkClient implements them)."""

    def claim(self, agent_id: str, max: int = 1, running_executions: list[str] | None = None) -> Claimed: ...

    def report_result(self, execution_id: str, report: ResultReport) -> ResultRecorded: ...

    def request_output_uploads(self, execution_id: str, attempt: int) -> OutputUploads: ...


# --- the runner ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerEvent:
    """Something worth a line of output: an execution started, finished, or was reported."""

    kind: Literal["started", "finished", "reported", "stopping"]
    record: ExecutionRecord
    detail: str = ""


Listener = Callable[[RunnerEvent], None]


@dataclass
class _Running:
    record: ExecutionRecord
    control: Control
    thread: threading.Thread


class TasksService(AgentService):
    """Claims executions for ``agent_id``, runs up to ``concurrency`` at once, reports every outcome."""

    name = "tasks"

    def __init__(
        self,
        client: TasksApi,
        store: AgentStore,
        registry: HandlerRegistry | None,
        agent_id: str,
        concurrency: int = DEFAULT_CONCURRENCY,
        *,
        listener: Listener | None = None,
        output_cap: int = OUTPUT_CAP_BYTES,
        send_output_bytes: int = SEND_OUTPUT_BYTES,
        kill_grace_s: float = KILL_GRACE_S,
        stop_grace_s: float = 30.0,
        clock: Callable[[], int] = now_ms,
        stream_output: bool = True,
        supervised: bool = True,
        uploader: OutputUploader | None = None,
    ) -> None:
        super().__init__(agent_id)
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1-{MAX_CONCURRENCY}")
        self.client = client
        self.store = store
        self.registry = registry or HandlerRegistry()
        self.concurrency = concurrency
        self._listener = listener
        self._output_cap = output_cap
        self._kill_grace_s = kill_grace_s
        self._stream_output = stream_output
        self._stop_grace_s = stop_grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[str, _Running] = {}
        #: Queued executions the last heartbeat reported waiting for this agent.
        self._pending = 0
        self._finished = threading.Event()
        self._stopping = threading.Event()
        self._urgent = threading.Event()
        #: Called when an execution starts, so the server hears of it now (the daemon: beat now; the
        #: heartbeat's running_executions marks it running) instead of at the next interval.
        self.on_started: Callable[[], None] = lambda: None
        #: Shell tasks run under a supervisor process each (their outcome outlives the daemon).
        self.supervised = supervised
        self.reporter = ResultReporter(
            client,
            store,
            send_output_bytes=send_output_bytes,
            runs_dir=runs_dir_of(store.path.parent),
            on_reported=lambda record, detail: self._emit("reported", record, detail),
            uploader=uploader or OutputUploader(client),
        )

    # --- state seen from outside ---

    def running_ids(self) -> list[str]:
        """Executions running in this process now."""
        with self._lock:
            return list(self._active)

    def free_slots(self) -> int:
        with self._lock:
            return self.concurrency - len(self._active)

    def _emit(
        self,
        kind: Literal["started", "finished", "reported", "stopping"],
        record: ExecutionRecord,
        detail: str = "",
    ) -> None:
        if self._listener is None:
            return
        try:
            self._listener(RunnerEvent(kind, record, detail))
        except Exception:
            log.exception("runner listener failed")

    # --- the service ---

    def start(self) -> None:
        """Settle what a previous run left: stop its surviving processes, record interrupted executions
        as failed, prune old rows, and report everything still owed (best effort: steps retry).

        Only one runner may use a store at a time (``fleetlink agent run`` holds a lock on the state dir).
        Shell executions ran under supervisors: their recorded outcomes are reported, and those still
        running adopted (:mod:`fleetlink.agent.tasks.supervised`); only the rest count as lost.
        """
        if self.supervised:
            recover_supervised(self)
        adopted = set(self.running_ids())
        for record in self.store.in_flight():
            if (
                record.execution_id not in adopted
                and record.status is RowStatus.RUNNING
                and record.pgid is not None
                and is_our_group(record.pgid, record.started_at)
            ):
                # Its output went with the previous run; it can only be stopped, and reported failed.
                log.warning(
                    "stopping %s left running by a previous run (pgid %s)", record.execution_id, record.pgid
                )
                kill_group(record.pgid, self._kill_grace_s)
        now = self._clock()
        for record in self.store.in_flight():
            if record.execution_id in adopted:
                continue
            error = RESTARTED if record.status is RowStatus.RUNNING else NEVER_STARTED
            result = ExecutionResult(
                status=ResultStatus.FAILED,
                started_at=record.started_at or now,
                finished_at=now,
                error=error,
            )
            finished = self.store.record_finished(record.execution_id, record.attempt, result)
            self._emit("finished", finished, error)
        self.store.prune(reported_before=now - KEEP_REPORTED_MS)
        if self.supervised:
            prune_runs(self)
        self.report_pending()

    def on_heartbeat(self, ack: HeartbeatAck) -> None:
        """Stop what the server cancels; note whether work is waiting (the next round claims it)."""
        self.follow_interval(ack)
        self.cancel(ack.cancel)
        self._pending = ack.pending_executions

    def heartbeat_metrics(self) -> dict[str, float]:
        return {"tasks_running": float(len(self.running_ids()))}

    def step(self) -> float:
        """Report what finished; claim while the last heartbeat said work is pending.

        Client errors propagate: the supervisor retries transient ones and stops the agent on the rest.
        """
        self.report_pending()
        if self._pending > 0 and not self._stopping.is_set():
            self._claim_all()
            self._pending = 0
        return self.interval_s

    def _claim_all(self) -> None:
        """Claim until the server has nothing more for us or every slot is busy."""
        while not self._stopping.is_set():
            asked = min(self.free_slots(), CLAIM_BATCH)
            if asked <= 0:
                return
            claimed = self.client.claim(self.agent_id, max=asked, running_executions=self.running_ids())
            self.cancel(claimed.cancel)
            unrecorded = [lease for lease in claimed.executions if not self._start_recorded(lease)]
            if unrecorded or len(claimed.executions) < asked:
                return

    def _start_recorded(self, lease: Lease) -> bool:
        """Start a lease; False when the state dir cannot record it (full or read-only): it is not run
        then, and the server hands it back to a later claim (it is still leased to this agent, never
        named running), so it runs once there is space instead of being lost."""
        try:
            self.start_execution(lease)
        except Exception as error:
            if (problem := takes_no_writes(error)) is None:
                raise
            log.warning(
                "%s: cannot record the claim (%s); it runs once the state dir takes writes again",
                lease.execution_id,
                problem,
            )
            return False
        return True

    def cancel(self, execution_ids: Iterable[str], reason: str = CANCELLED) -> None:
        """Stop these executions if they run here (their worker kills the process group and reports)."""
        for execution_id in execution_ids:
            with self._lock:
                running = self._active.get(execution_id)
            if running is None:
                continue
            if running.control.stop_reason is None:
                self._emit("stopping", running.record, reason)
            running.control.stop(reason)

    # --- executions ---

    def start_execution(self, lease: Lease) -> None:
        """Record the lease, then run it in a worker thread (or record why it cannot run)."""
        known = not self.store.record_claimed(
            **lease.model_dump(include=_KEPT_OF_LEASE), claimed_at=self._clock()
        )
        if known:
            log.info(
                "%s attempt %s was claimed before; not running it again", lease.execution_id, lease.attempt
            )
            return
        record = self.store.get(lease.execution_id, lease.attempt)
        assert record is not None
        problem = None
        if lease.type not in self.registry:
            problem = f"no handler for task type {lease.type}"
        elif lease.type == SHELL and not (lease.command or "").strip():
            problem = "a shell task without a command"
        if problem is not None:
            self._finish(record, Outcome(ResultStatus.FAILED, error=problem), started_at=self._clock())
            self._finished.set()
            self.wake()
            return
        self.adopt(record)

    def adopt(self, record: ExecutionRecord) -> None:
        """Run (or follow, when a previous daemon's supervisor still runs it) an execution in a worker."""
        control = Control()
        thread = threading.Thread(
            target=self._work, args=(record, control), name=f"exec-{record.execution_id}", daemon=True
        )
        with self._lock:
            self._active[record.execution_id] = _Running(record, control, thread)
        thread.start()

    def _work(self, record: ExecutionRecord, control: Control) -> None:
        started_at = record.started_at or self._clock()  # an adopted execution started before
        try:
            outcome = self._execute(record, control)
        except Exception as exc:
            log.exception("%s: the agent failed to run it", record.execution_id)
            outcome = Outcome(ResultStatus.FAILED, error=f"agent error: {type(exc).__name__}: {exc}")
        try:
            self._finish(record, outcome, started_at=started_at)
        except Exception:
            log.exception("%s: cannot record its result", record.execution_id)
        finally:
            with self._lock:
                self._active.pop(record.execution_id, None)
            self._finished.set()
            self.wake()

    def _execute(self, record: ExecutionRecord, control: Control) -> Outcome:
        if self.supervised and supervises(self, record):
            return run_supervised(self, record, control)
        if record.type == SHELL:

            def started(pid: int) -> None:
                self.store.mark_started(
                    record.execution_id, record.attempt, pid=pid, pgid=pid, started_at=self._clock()
                )
                self._emit("started", record, f"pid {pid}")
                self.on_started()

            streamers: list[OutputStreamer] = []

            def stream(stdout: OutputCollector, stderr: OutputCollector) -> None:
                if isinstance(self.client, OutputApi) and self._stream_output:
                    sources = {"stdout": stdout, "stderr": stderr}
                    streamers.append(
                        OutputStreamer(self.client, record.execution_id, record.attempt, sources).start()
                    )

            try:
                return self._run_shell(record, control, started, stream)
            finally:
                for streamer in streamers:  # the last new output, before the result is recorded
                    streamer.close()
        handler = self.registry.get(record.type)
        if handler is None:  # checked before the worker started; kept for safety
            return Outcome(ResultStatus.FAILED, error=f"no handler for task type {record.type}")
        self.store.mark_started(
            record.execution_id, record.attempt, pid=os.getpid(), started_at=self._clock()
        )
        self._emit("started", record, "handler")
        self.on_started()
        return run_handler(
            handler, dict(record.input or {}), record.timeout_seconds, control, output_cap=self._output_cap
        )

    def _run_shell(
        self,
        record: ExecutionRecord,
        control: Control,
        started: Callable[[int], None],
        stream: Callable[[OutputCollector, OutputCollector], None],
    ) -> Outcome:
        return run_shell(
            record.command or "",
            record.timeout_seconds,
            control,
            on_start=started,
            on_output=stream,
            env=execution_env(record),
            output_cap=self._output_cap,
            kill_grace_s=self._kill_grace_s,
        )

    def _finish(self, record: ExecutionRecord, outcome: Outcome, *, started_at: int) -> None:
        if record.type == SHELL and self.supervised:
            declare_complete_output(self, record)  # before the result is recorded and reported
        result = outcome.result(started_at, self._clock(), MAX_ERROR_CHARS)
        finished = self.store.record_finished(record.execution_id, record.attempt, result)
        self._emit("finished", finished, result.error or "")

    # --- reporting (fleetlink.agent.tasks.reporting) ---

    def report_pending(self) -> int:
        """Report every finished, unreported execution, then upload complete output owed; how many
        results are still owed (it stops at the first transient failure)."""
        return self.reporter.report_pending()

    # --- stopping ---

    def stop(self, *, urgent: bool = False) -> None:
        """Claim no more; running executions get ``stop_grace_s`` to finish (none when ``urgent``), the
        rest are stopped; report what can be."""
        self._stopping.set()
        if urgent:
            self._urgent.set()
        deadline = time.monotonic() + (0.0 if self._urgent.is_set() else self._stop_grace_s)
        while self.running_ids() and not self._urgent.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._finished.clear()
            with contextlib.suppress(FleetlinkClientError):
                self.report_pending()  # the heartbeat keeps renewing leases meanwhile
            self._finished.wait(min(remaining, self.interval_s))
        with self._lock:
            left = list(self._active.values())
        self.cancel([running.record.execution_id for running in left], reason=STOPPED)
        for running in left:
            running.thread.join(self._kill_grace_s + DRAIN_GRACE_S + 5.0)
        with contextlib.suppress(FleetlinkClientError, StoreError):
            self.report_pending()

    def hurry(self) -> None:
        """Stop running executions now instead of waiting out the grace."""
        self._urgent.set()
        self._finished.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()
