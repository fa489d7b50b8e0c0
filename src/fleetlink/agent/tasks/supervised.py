"""The tasks service's side of per-execution supervisors: run an execution under one (a shell
command, or a typed task whose handler is known by reference), and at start-up report what
supervisors recorded while the daemon was down, or adopt those still running.

Kept apart from the runner so the runner only chooses (``TasksService.supervised``); the process
itself is :mod:`fleetlink.agent.tasks.supervisor`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fleetlink.agent.process import Control
from fleetlink.agent.tasks import supervisor, uploads
from fleetlink.agent.tasks.execution import execution_env
from fleetlink.agent.tasks.handlers import SHELL
from fleetlink.agent.tasks.output import FileTail, OutputApi, OutputStreamer, StreamProgress
from fleetlink.agent.tasks.store import ExecutionRecord, ResultStatus

if TYPE_CHECKING:
    from fleetlink.agent.tasks.execution import Outcome
    from fleetlink.agent.tasks.service import TasksService

log = logging.getLogger(__name__)


def state_dir_of(service: TasksService) -> Path:
    """The service's state dir (agent.db's folder): its run dirs are in ``runs/`` there."""
    return service.store.path.parent


def supervises(service: TasksService, record: ExecutionRecord) -> bool:
    """Whether this execution runs under a supervisor: a shell command, a typed task whose handler
    has a reference, or one a supervisor already runs (adopted after a restart)."""
    if record.type == SHELL or service.registry.reference(record.type) is not None:
        return True
    folder = supervisor.run_dir(state_dir_of(service), record.execution_id, record.attempt)
    return (folder / supervisor.SPEC).exists()


def run_supervised(service: TasksService, record: ExecutionRecord, control: Control) -> Outcome:
    """Run (or, once adopted, follow) an execution under its supervisor until it ends."""
    folder = supervisor.run_dir(state_dir_of(service), record.execution_id, record.attempt)

    def started(pid: int) -> None:
        if record.started_at is not None:  # adopted: it started before this daemon did
            return
        service.store.mark_started(
            record.execution_id, record.attempt, pid=pid, pgid=pid, started_at=service._clock()
        )
        service._emit("started", record, f"pid {pid}")
        service.on_started()

    env = execution_env(record)
    reference = service.registry.reference(record.type)
    if record.type == SHELL:
        spec = supervisor.shell_spec(record.command or "", env)
    elif reference is not None:
        spec = supervisor.handler_spec(reference, record.input or {}, env)
    elif supervisor.started(folder) is not None:
        spec = {}  # adopted: its supervisor runs it already (the spec is only for a start)
    else:
        from fleetlink.agent.tasks.execution import Outcome

        return Outcome(ResultStatus.FAILED, error=f"no handler for task type {record.type}")
    streamer = None
    if service._stream_output and isinstance(service.client, OutputApi) and record.type == SHELL:
        # a daemon restarted mid-stream goes on after the last chunk the server acknowledged
        progress = StreamProgress(folder)
        sources = {
            name: FileTail(folder / name, progress.offset(name))
            for name in (supervisor.STDOUT, supervisor.STDERR)
        }
        streamer = OutputStreamer(
            service.client, record.execution_id, record.attempt, sources, progress=progress
        ).start()
    try:
        found, stopped = supervisor.supervise(
            folder,
            spec,
            record.timeout_seconds,
            control,
            on_start=started,
            output_cap=service._output_cap,
            kill_grace_s=service._kill_grace_s,
        )
    finally:
        if streamer is not None:  # the last new output, before the result is recorded
            streamer.close()
    return outcome_of(found, stopped, record.timeout_seconds, _handler_error(record, folder))


def _handler_error(record: ExecutionRecord, folder: Path) -> str | None:
    """A typed task's failure as its handler process wrote it ("" when it wrote none); None for shell."""
    if record.type == SHELL:
        return None
    return supervisor.recorded_error(folder) or ""


def outcome_of(
    found: supervisor.Recorded | None, stopped: str | None, timeout_s: float, handler_error: str | None = None
) -> Outcome:
    """The execution's outcome from what the supervisor recorded (as ``run_shell`` would say it, or for a
    typed task, ``run_handler``: ``handler_error`` not None)."""
    from fleetlink.agent.tasks.execution import Outcome

    if found is None:
        return Outcome(
            ResultStatus.FAILED, error=stopped or "the command's supervisor ended without an outcome"
        )

    def ended(status: ResultStatus, exit_code: int | None, error: str | None = None) -> Outcome:
        return Outcome(
            status, exit_code, found.stdout, found.stdout_bytes, error, found.stderr, found.stderr_bytes
        )

    if stopped == "timeout" and found.exit_code != 0:
        return ended(ResultStatus.TIMED_OUT, None, f"timed out after {timeout_s:g} s")
    if stopped is not None and found.exit_code != 0:
        return ended(ResultStatus.FAILED, None, stopped)
    if found.exit_code == 0:
        return ended(ResultStatus.SUCCEEDED, 0 if handler_error is None else None)
    if found.signal is not None:
        code = 128 + found.signal if handler_error is None else None
        return ended(ResultStatus.FAILED, code, supervisor.describe_signal(found.signal))
    if handler_error is not None:
        return ended(
            ResultStatus.FAILED, None, handler_error or f"the handler's process exited {found.exit_code}"
        )
    return ended(ResultStatus.FAILED, found.exit_code)


def recover_supervised(service: TasksService) -> None:
    """At start-up: report each in-flight shell execution whose supervisor recorded an outcome, and
    adopt each whose supervisor still runs; the rest are left to the caller (lost with the node)."""
    for record in service.store.in_flight():
        folder = supervisor.run_dir(state_dir_of(service), record.execution_id, record.attempt)
        if not folder.is_dir():
            continue
        found = supervisor.recorded(folder, service._output_cap)
        if found is not None:
            log.info("%s ended while the agent was down; reporting its recorded outcome", record.execution_id)
            outcome = outcome_of(found, None, record.timeout_seconds, _handler_error(record, folder))
            service._finish(record, outcome, started_at=found.started_at)
        elif supervisor.alive(folder):
            log.info("%s still runs under its supervisor; adopting it", record.execution_id)
            service.adopt(record)


def runs_dir_of(state_dir: Path) -> Path:
    return state_dir / supervisor.RUNS_DIR


def declare_complete_output(service: TasksService, record: ExecutionRecord) -> None:
    """Compress the streams that outgrew the inline copy, for the output bucket (best effort: the
    result is reported without them if the disk refuses)."""
    folder = supervisor.run_dir(state_dir_of(service), record.execution_id, record.attempt)
    if not folder.is_dir():
        return
    try:
        uploads.declare_objects(folder)
    except OSError as error:
        log.warning(
            "%s: cannot keep its complete output (%s); its result keeps head and tail",
            record.execution_id,
            error,
        )


def prune_runs(service: TasksService) -> int:
    """Remove the run dirs of executions no longer in flight (their outcome is in the store) and
    with no complete output left to upload; how many."""
    runs = runs_dir_of(state_dir_of(service))
    if not runs.is_dir():
        return 0
    keep = {f"{r.execution_id}-{r.attempt}" for r in service.store.in_flight()}
    removed = 0
    for folder in runs.iterdir():
        if folder.name not in keep and not uploads.owed(folder):
            supervisor.forget(folder)
            removed += 1
    return removed
