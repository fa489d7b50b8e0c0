"""The agent's task runner: claim executions, run them, report how they ended, survive restarts.

One loop thread talks to the server (report what finished, heartbeat, stop what the server cancels,
claim while work is pending); each execution runs in a worker thread of its own, at most
``concurrency`` at a time. Every execution is written to the local store when it is claimed (before
it starts) and when it finishes (before it is reported), so an agent restarted mid-task reports the
outcome instead of losing it.

Shell tasks run ``/bin/sh -c COMMAND`` as a new session (its own process group) with stdout and
stderr merged; a timeout or cancel stops the whole group (SIGTERM, then SIGKILL after a grace),
and a task's processes end with the task: anything it left running in its group is stopped too.
Other task types run a handler from a :class:`HandlerRegistry`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import IO, Any, Literal, Protocol

from fleetlink.agent.client import FleetlinkApiError, FleetlinkClientError, is_transient
from fleetlink.agent.store import (
    AgentStore,
    ExecutionRecord,
    ExecutionResult,
    ResultStatus,
    RowStatus,
    StoreError,
    group_alive,
    is_our_group,
    now_ms,
)
from fleetlink.contract.agents import HeartbeatAck
from fleetlink.contract.tasks import Claimed, Lease, ResultRecorded

log = logging.getLogger(__name__)

SHELL = "shell"
SHELL_PATH = "/bin/sh"
DEFAULT_CONCURRENCY = 4
#: The server renews at most this many leases per heartbeat.
MAX_CONCURRENCY = 100
#: The server hands out at most this many executions per claim.
CLAIM_BATCH = 10
#: Output kept locally per execution; the rest is counted and drained.
OUTPUT_CAP_BYTES = 256 * 1024
#: Output sent with a result (the server keeps 16 KiB of it inline).
SEND_OUTPUT_BYTES = 64 * 1024
MAX_ERROR_CHARS = 4096
#: Between SIGTERM and SIGKILL to a task's process group.
KILL_GRACE_S = 2.0
#: How long to wait for the output pipe to close once the task's processes are gone.
DRAIN_GRACE_S = 2.0
DEFAULT_INTERVAL_S = 60.0
#: Reported executions older than this are pruned from the local store at start-up.
KEEP_REPORTED_MS = 7 * 24 * 3600 * 1000
#: Longest wait between retries while the server is unreachable.
MAX_BACKOFF_S = 30.0

CANCELLED = "cancelled"
STOPPED = "agent stopped while the task ran"
RESTARTED = "agent restarted while the task ran"
NEVER_STARTED = "agent restarted before the task started"

Handler = Callable[[dict[str, Any]], Any]
#: Entry-point group through which installed packages add task handlers (entry point name = task type).
HANDLER_ENTRY_POINTS = "fleetlink.task_handlers"


class AgentApi(Protocol):
    """The calls the runner makes (FleetlinkClient implements them)."""

    def heartbeat(
        self,
        agent_id: str,
        status: str | None = None,
        metrics: Mapping[str, float] | None = None,
        running_executions: list[str] | None = None,
    ) -> HeartbeatAck: ...

    def claim(self, agent_id: str, max: int = 1, running_executions: list[str] | None = None) -> Claimed: ...

    def report_result(
        self,
        execution_id: str,
        *,
        attempt: int,
        status: str,
        started_at: int,
        finished_at: int,
        exit_code: int | None = None,
        output: str | None = None,
        output_truncated: bool = False,
        output_bytes: int | None = None,
        error: str | None = None,
    ) -> ResultRecorded: ...


# --- handlers ------------------------------------------------------------------------------------


class HandlerRegistry:
    """Handlers for task types other than ``shell`` (built in).

    A handler takes the task's ``input`` dict and returns something JSON-serialisable, which becomes
    the execution's output (as JSON text); an exception makes the execution ``failed`` with the error.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, task_type: str) -> Callable[[Handler], Handler]:
        """Decorator: ``@registry.register("inventory")`` makes the function the handler of that type."""

        def decorate(handler: Handler) -> Handler:
            self.add(task_type, handler)
            return handler

        return decorate

    def add(self, task_type: str, handler: Handler) -> None:
        if task_type == SHELL:
            raise ValueError("the shell task type is built in")
        if task_type in self._handlers:
            raise ValueError(f"task type {task_type!r} already has a handler")
        self._handlers[task_type] = handler

    def load_entry_points(self, group: str = HANDLER_ENTRY_POINTS) -> list[str]:
        """Add the handlers installed packages declare as entry points (name = task type); returns the
        types added. One that fails to load is logged and skipped."""
        added = []
        for entry_point in entry_points(group=group):
            try:
                handler = entry_point.load()
                if not callable(handler):
                    raise TypeError(f"{entry_point.value} is not callable")
                self.add(entry_point.name, handler)
            except Exception:
                log.exception("cannot load the task handler %s (%s)", entry_point.name, entry_point.value)
                continue
            added.append(entry_point.name)
        return added

    def get(self, task_type: str) -> Handler | None:
        return self._handlers.get(task_type)

    def __contains__(self, task_type: object) -> bool:
        return task_type == SHELL or task_type in self._handlers

    def types(self) -> list[str]:
        """Every task type this agent runs."""
        return sorted([SHELL, *self._handlers])


# --- running one execution -----------------------------------------------------------------------


@dataclass
class Control:
    """How the loop reaches a running execution: ask it to stop, and wake its worker."""

    wake: threading.Event = field(default_factory=threading.Event)
    stop_reason: str | None = None

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.wake.set()


@dataclass(frozen=True)
class Outcome:
    """How an execution ended, before it is stored."""

    status: ResultStatus
    exit_code: int | None = None
    output: bytes = b""
    output_bytes: int = 0
    error: str | None = None

    @property
    def truncated(self) -> bool:
        return self.output_bytes > len(self.output)


class OutputCollector(threading.Thread):
    """Reads a pipe to its end: keeps the first ``cap`` bytes, counts them all, drains the rest."""

    def __init__(self, stream: IO[bytes], cap: int) -> None:
        super().__init__(name="task-output", daemon=True)
        self._stream = stream
        self._cap = cap
        self._chunks: list[bytes] = []
        self.kept = 0
        self.total = 0
        self._halt = threading.Event()

    def run(self) -> None:
        fd = self._stream.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while not self._halt.is_set():
                if not selector.select(timeout=0.2):
                    continue
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.total += len(data)
                room = self._cap - self.kept
                if room > 0:
                    self._chunks.append(data[:room])
                    self.kept += min(room, len(data))

    def halt(self) -> None:
        """Stop reading even though the pipe is still open (someone outside the group holds it)."""
        self._halt.set()

    def output(self) -> bytes:
        return b"".join(self._chunks)


def kill_group(pgid: int, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the process group, and SIGKILL whatever of it is still alive after ``grace_s``."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.05)  # no way to wait for a whole group: look again shortly
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_shell(
    command: str,
    timeout_s: float,
    control: Control,
    *,
    on_start: Callable[[int], None] = lambda pid: None,
    env: Mapping[str, str] | None = None,
    output_cap: int = OUTPUT_CAP_BYTES,
    kill_grace_s: float = KILL_GRACE_S,
) -> Outcome:
    """Run ``/bin/sh -c command`` in its own process group until it exits, times out or is stopped.

    ``on_start(pid)`` runs once the process exists (its pid is also its process group id).
    """
    process = subprocess.Popen(  # noqa: S603 - running the operator's command is the point
        [SHELL_PATH, "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
        env=None if env is None else {**os.environ, **env},
    )
    assert process.stdout is not None
    pgid = process.pid
    collector = OutputCollector(process.stdout, output_cap)
    collector.start()
    exited = threading.Event()

    def wait_for_exit() -> None:
        process.wait()
        exited.set()
        control.wake.set()

    waiter = threading.Thread(target=wait_for_exit, name="task-wait", daemon=True)
    waiter.start()
    timed_out = False
    try:
        on_start(process.pid)
        deadline = time.monotonic() + timeout_s
        while not exited.is_set() and control.stop_reason is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            control.wake.wait(remaining)
    finally:
        # The task's processes end with it: on exit, timeout, stop, or an error here.
        kill_group(pgid, kill_grace_s)
        waiter.join(kill_grace_s + DRAIN_GRACE_S)  # a process stuck in the kernel may outlive SIGKILL
        collector.join(DRAIN_GRACE_S)
        if collector.is_alive():
            collector.halt()
            collector.join()
        process.stdout.close()
    kept, total = collector.output(), collector.total
    code = process.returncode
    if timed_out:
        return Outcome(ResultStatus.TIMED_OUT, None, kept, total, f"timed out after {timeout_s:g} s")
    if control.stop_reason is not None and not (exited.is_set() and code == 0):
        return Outcome(ResultStatus.FAILED, None, kept, total, control.stop_reason)
    if code is None:
        return Outcome(ResultStatus.FAILED, None, kept, total, f"process {pgid} did not die after SIGKILL")
    if code == 0:
        return Outcome(ResultStatus.SUCCEEDED, 0, kept, total)
    if code < 0:
        return Outcome(ResultStatus.FAILED, 128 - code, kept, total, f"killed by {_signal_name(-code)}")
    return Outcome(ResultStatus.FAILED, code, kept, total)


def run_handler(
    handler: Handler,
    task_input: dict[str, Any],
    timeout_s: float,
    control: Control,
    *,
    output_cap: int = OUTPUT_CAP_BYTES,
) -> Outcome:
    """Run a handler in a thread of its own; a timeout or stop abandons it (threads cannot be killed)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def call() -> None:
        try:
            box["result"] = handler(task_input)
        except Exception as exc:  # the handler's failure is the execution's result
            box["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            done.set()
            control.wake.set()

    threading.Thread(target=call, name="task-handler", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not done.is_set() and control.stop_reason is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Outcome(ResultStatus.TIMED_OUT, error=f"timed out after {timeout_s:g} s")
        control.wake.wait(remaining)
    if not done.is_set():
        return Outcome(ResultStatus.FAILED, error=control.stop_reason)
    if "error" in box:
        return Outcome(ResultStatus.FAILED, error=box["error"])
    try:
        text = json.dumps(box.get("result"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        return Outcome(ResultStatus.FAILED, error=f"the handler's result is not JSON: {exc}")
    data = text.encode()
    return Outcome(ResultStatus.SUCCEEDED, output=data[:output_cap], output_bytes=len(data))


def clip_utf8(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` UTF-8 bytes (never inside a character), and whether it was cut."""
    data = text.encode()
    if len(data) <= limit:
        return text, False
    return data[:limit].decode("utf-8", errors="ignore"), True


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


class TaskRunner:
    """Claims executions for ``agent_id``, runs up to ``concurrency`` at once, reports every outcome."""

    def __init__(
        self,
        client: AgentApi,
        store: AgentStore,
        registry: HandlerRegistry | None,
        agent_id: str,
        concurrency: int = DEFAULT_CONCURRENCY,
        *,
        listener: Listener | None = None,
        metrics: Callable[[], Mapping[str, float]] | None = None,
        output_cap: int = OUTPUT_CAP_BYTES,
        send_output_bytes: int = SEND_OUTPUT_BYTES,
        kill_grace_s: float = KILL_GRACE_S,
        stop_grace_s: float = 30.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        if not agent_id:
            raise ValueError("agent_id is required")
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1-{MAX_CONCURRENCY}")
        self.client = client
        self.store = store
        self.registry = registry or HandlerRegistry()
        self.agent_id = agent_id
        self.concurrency = concurrency
        self.interval_s = DEFAULT_INTERVAL_S
        self._listener = listener
        self._metrics = metrics
        self._output_cap = output_cap
        self._send_output_bytes = send_output_bytes
        self._kill_grace_s = kill_grace_s
        self._stop_grace_s = stop_grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[str, _Running] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._urgent = threading.Event()
        self._failures = 0

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

    # --- start-up ---

    def recover(self) -> None:
        """Settle what a previous run left: stop its surviving processes, record interrupted executions
        as failed, prune old rows, and report everything still owed (best effort: steps retry).

        Only one runner may use a store at a time (``fleetlink agent run`` holds a lock on the state dir).
        """
        for record in self.store.in_flight():
            if record.status is RowStatus.RUNNING and record.pgid is not None and is_our_group(record):
                # Its output went with the previous run; it can only be stopped, and reported failed.
                log.warning(
                    "stopping %s left running by a previous run (pgid %s)", record.execution_id, record.pgid
                )
                kill_group(record.pgid, self._kill_grace_s)
        now = self._clock()
        for record in self.store.in_flight():
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
        self.report_pending()

    # --- one step of the loop ---

    def step(self) -> float:
        """Report, heartbeat, stop cancelled executions, claim while work is pending.

        Returns how long to wait before the next step: the server's heartbeat interval, or a back-off
        after a failure that may pass. Raises FleetlinkApiError for answers that retrying cannot fix
        (e.g. a revoked agent).
        """
        self.report_pending()
        claiming = not self._stopping.is_set()
        try:
            ack = self.client.heartbeat(
                self.agent_id,
                status="ok" if claiming else "draining",
                metrics=self._heartbeat_metrics(),
                running_executions=self.running_ids(),
            )
        except FleetlinkClientError as error:
            return self._backoff("heartbeat", error)
        self._failures = 0
        self.interval_s = float(max(1, ack.heartbeat_interval_s))
        self.cancel(ack.cancel)
        if claiming and ack.pending_executions > 0:
            try:
                self._claim_all()
            except FleetlinkClientError as error:
                return self._backoff("claim", error)
        return self.interval_s

    def _backoff(self, what: str, error: FleetlinkClientError) -> float:
        if isinstance(error, FleetlinkApiError) and not is_transient(error):
            raise error
        self._failures += 1
        wait = min(self.interval_s, MAX_BACKOFF_S, 2.0**self._failures)
        log.warning("%s failed (%s); retrying in %.0f s", what, error, wait)
        return wait

    def _heartbeat_metrics(self) -> dict[str, float]:
        values = dict(self._metrics()) if self._metrics else {}
        values["tasks_running"] = float(len(self.running_ids()))
        return values

    def _claim_all(self) -> None:
        """Claim until the server has nothing more for us or every slot is busy."""
        while not self._stopping.is_set():
            asked = min(self.free_slots(), CLAIM_BATCH)
            if asked <= 0:
                return
            claimed = self.client.claim(self.agent_id, max=asked, running_executions=self.running_ids())
            self.cancel(claimed.cancel)
            for lease in claimed.executions:
                self.start(lease)
            if len(claimed.executions) < asked:
                return

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

    def start(self, lease: Lease) -> None:
        """Record the lease, then run it in a worker thread (or record why it cannot run)."""
        known = not self.store.record_claimed(
            execution_id=lease.execution_id,
            attempt=lease.attempt,
            task_id=lease.task_id,
            type=lease.type,
            command=lease.command,
            input=lease.input,
            timeout_seconds=lease.timeout_seconds,
            claimed_at=self._clock(),
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
            self._wake.set()
            return
        control = Control()
        thread = threading.Thread(
            target=self._work, args=(record, control), name=f"exec-{lease.execution_id}", daemon=True
        )
        with self._lock:
            self._active[lease.execution_id] = _Running(record, control, thread)
        thread.start()

    def _work(self, record: ExecutionRecord, control: Control) -> None:
        started_at = self._clock()
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
            self._wake.set()

    def _execute(self, record: ExecutionRecord, control: Control) -> Outcome:
        if record.type == SHELL:

            def started(pid: int) -> None:
                self.store.mark_started(
                    record.execution_id, record.attempt, pid=pid, pgid=pid, started_at=self._clock()
                )
                self._emit("started", record, f"pid {pid}")

            return run_shell(
                record.command or "",
                record.timeout_seconds,
                control,
                on_start=started,
                env={
                    "FLEETLINK_EXECUTION_ID": record.execution_id,
                    "FLEETLINK_TASK_ID": record.task_id,
                    "FLEETLINK_ATTEMPT": str(record.attempt),
                },
                output_cap=self._output_cap,
                kill_grace_s=self._kill_grace_s,
            )
        handler = self.registry.get(record.type)
        if handler is None:  # checked before the worker started; kept for safety
            return Outcome(ResultStatus.FAILED, error=f"no handler for task type {record.type}")
        self.store.mark_started(
            record.execution_id, record.attempt, pid=os.getpid(), started_at=self._clock()
        )
        self._emit("started", record, "handler")
        return run_handler(
            handler, dict(record.input or {}), record.timeout_seconds, control, output_cap=self._output_cap
        )

    def _finish(self, record: ExecutionRecord, outcome: Outcome, *, started_at: int) -> None:
        error = outcome.error[:MAX_ERROR_CHARS] if outcome.error else None
        result = ExecutionResult(
            status=outcome.status,
            started_at=started_at,
            finished_at=self._clock(),
            exit_code=outcome.exit_code,
            output=outcome.output.decode("utf-8", errors="replace"),
            output_truncated=outcome.truncated,
            output_bytes=outcome.output_bytes,
            error=error,
        )
        finished = self.store.record_finished(record.execution_id, record.attempt, result)
        self._emit("finished", finished, error or "")

    # --- reporting ---

    def report_pending(self) -> int:
        """Report every finished, unreported execution; stops at the first transient failure.

        Returns how many are still owed. An answer the server will never change (409: it has moved
        on, 404, 403, 422) marks the execution reported all the same, with a log line.
        """
        owed = self.store.unreported()
        for index, record in enumerate(owed):
            try:
                answer = self.client.report_result(record.execution_id, **self.result_body(record))
            except FleetlinkApiError as error:
                if is_transient(error):
                    log.warning("reporting %s failed (%s); will retry", record.execution_id, error)
                    return len(owed) - index
                log.warning("the server refused the result of %s: %s", record.execution_id, error)
                self.store.mark_reported(
                    record.execution_id, record.attempt, server_status=f"refused:{error.status}"
                )
                self._emit("reported", record, f"refused: {error.status} {error.title}")
                continue
            except FleetlinkClientError as error:
                log.warning("reporting %s failed (%s); will retry", record.execution_id, error)
                return len(owed) - index
            self.store.mark_reported(record.execution_id, record.attempt, server_status=answer.status.value)
            self._emit("reported", record, answer.status.value)
        return 0

    def result_body(self, record: ExecutionRecord) -> dict[str, Any]:
        """The result as sent: the same every time for one attempt, so a resend is recognised."""
        result = record.result()
        output, clipped = clip_utf8(result.output, self._send_output_bytes)
        truncated = clipped or result.output_truncated
        started_at = result.started_at if result.started_at is not None else result.finished_at
        return {
            "attempt": record.attempt,
            "status": result.status.value,
            "started_at": started_at,
            "finished_at": max(result.finished_at, started_at),
            "exit_code": result.exit_code,
            "output": output or None,
            "output_truncated": truncated,
            "output_bytes": (result.output_bytes or len(result.output.encode())) if truncated else None,
            "error": result.error,
        }

    # --- the loop ---

    def request_stop(self, *, urgent: bool = False) -> None:
        """Stop claiming; running executions get ``stop_grace_s`` to finish (none when ``urgent``)."""
        self._stopping.set()
        if urgent:
            self._urgent.set()
        self._wake.set()

    def wake(self) -> None:
        """Take the next step now instead of at the next heartbeat interval."""
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        """Recover, then step until :meth:`request_stop`; then drain. API errors retrying cannot fix
        (a revoked agent) stop the runner and are raised after the drain."""
        self.recover()
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                wait_s = self.step()
                if wait_s > 0:
                    self._wake.wait(wait_s)
        except FleetlinkApiError:
            self.request_stop(urgent=True)
            self.drain()
            raise
        self.drain()

    def drain(self) -> None:
        """Let running executions finish (up to ``stop_grace_s``), stop the rest, report what can be."""
        deadline = time.monotonic() + (0.0 if self._urgent.is_set() else self._stop_grace_s)
        while self.running_ids() and not self._urgent.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wake.clear()
            try:
                wait_s = self.step()  # keeps leases alive and reports as executions finish
            except FleetlinkApiError:
                break
            self._wake.wait(min(wait_s, remaining))
        with self._lock:
            left = list(self._active.values())
        self.cancel([running.record.execution_id for running in left], reason=STOPPED)
        for running in left:
            running.thread.join(self._kill_grace_s + DRAIN_GRACE_S + 5.0)
        with contextlib.suppress(FleetlinkClientError, StoreError):
            self.report_pending()
