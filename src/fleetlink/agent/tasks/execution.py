"""Running one execution: a shell command in a process group of its own, or a handler, with its output
capped."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetlink.agent.process import (
    KILL_GRACE_S,
    Control,
    OutputCollector,
    run_in_group,
    signal_name,
)
from fleetlink.agent.tasks.handlers import Handler
from fleetlink.agent.tasks.output import LIVE_CAP_BYTES
from fleetlink.agent.tasks.store import ExecutionRecord, ExecutionResult, ResultStatus
from fleetlink.core.tasks.output import INLINE_HEAD_BYTES, head_and_tail

SHELL_PATH = "/bin/sh"


#: Output kept locally per stream of an execution: this much of its start and of its end (the rest
#: is counted, and streamed live while it runs).
OUTPUT_CAP_BYTES = INLINE_HEAD_BYTES


# --- running one execution -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How an execution ended, before it is stored."""

    status: ResultStatus
    exit_code: int | None = None
    output: bytes = b""
    output_bytes: int = 0
    error: str | None = None
    stderr: bytes = b""
    stderr_bytes: int = 0

    def result(self, started_at: int, finished_at: int, max_error_chars: int) -> ExecutionResult:
        """The outcome as stored: each stream's head and tail, the error cut to ``max_error_chars``."""
        output, output_truncated, output_bytes = head_and_tail(self.output, self.output_bytes)
        stderr, stderr_truncated, stderr_bytes = head_and_tail(self.stderr, self.stderr_bytes)
        return ExecutionResult(
            status=self.status,
            started_at=started_at,
            finished_at=finished_at,
            exit_code=self.exit_code,
            output=output,
            output_truncated=output_truncated,
            output_bytes=output_bytes,
            error=self.error[:max_error_chars] if self.error else None,
            stderr=stderr,
            stderr_truncated=stderr_truncated,
            stderr_bytes=stderr_bytes,
        )


def execution_env(record: ExecutionRecord) -> dict[str, str]:
    """What a shell execution finds in its environment about itself."""
    return {
        "FLEETLINK_EXECUTION_ID": record.execution_id,
        "FLEETLINK_TASK_ID": record.task_id,
        "FLEETLINK_ATTEMPT": str(record.attempt),
    }


def run_shell(
    command: str,
    timeout_s: float,
    control: Control,
    *,
    on_start: Callable[[int], None] = lambda pid: None,
    on_output: Callable[[OutputCollector, OutputCollector], None] = lambda stdout, stderr: None,
    env: Mapping[str, str] | None = None,
    output_cap: int = OUTPUT_CAP_BYTES,
    kill_grace_s: float = KILL_GRACE_S,
) -> Outcome:
    """Run ``/bin/sh -c command`` in its own process group until it exits, times out or is stopped."""
    run = run_in_group(
        [SHELL_PATH, "-c", command],
        timeout_s,
        control,
        output_cap=output_cap,
        on_start=on_start,
        on_output=on_output,
        live_cap=LIVE_CAP_BYTES,
        env=env,
        kill_grace_s=kill_grace_s,
    )
    code = run.returncode

    def ended(status: ResultStatus, exit_code: int | None, error: str | None = None) -> Outcome:
        return Outcome(status, exit_code, run.output, run.output_bytes, error, run.stderr, run.stderr_bytes)

    if run.timed_out:
        return ended(ResultStatus.TIMED_OUT, None, f"timed out after {timeout_s:g} s")
    if control.stop_reason is not None and not (run.exited and code == 0):
        return ended(ResultStatus.FAILED, None, control.stop_reason)
    if code is None:
        return ended(ResultStatus.FAILED, None, f"process {run.pid} did not die after SIGKILL")
    if code == 0:
        return ended(ResultStatus.SUCCEEDED, 0)
    if code < 0:
        return ended(ResultStatus.FAILED, 128 - code, f"killed by {signal_name(-code)}")
    return ended(ResultStatus.FAILED, code)


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
    kept = data if len(data) <= 2 * output_cap else data[:output_cap] + data[-output_cap:]
    return Outcome(ResultStatus.SUCCEEDED, output=kept, output_bytes=len(data))


def clip_utf8(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` UTF-8 bytes (never inside a character), and whether it was cut."""
    data = text.encode()
    if len(data) <= limit:
        return text, False
    return data[:limit].decode("utf-8", errors="ignore"), True
