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
    run_in_group,
    signal_name,
)
from fleetlink.agent.tasks.handlers import Handler
from fleetlink.agent.tasks.store import (
    ResultStatus,
)

SHELL_PATH = "/bin/sh"


#: Output kept locally per execution; the rest is counted and drained.
OUTPUT_CAP_BYTES = 256 * 1024


# --- running one execution -----------------------------------------------------------------------


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
    """Run ``/bin/sh -c command`` in its own process group until it exits, times out or is stopped."""
    run = run_in_group(
        [SHELL_PATH, "-c", command],
        timeout_s,
        control,
        output_cap=output_cap,
        on_start=on_start,
        env=env,
        kill_grace_s=kill_grace_s,
    )
    kept, total, code = run.output, run.output_bytes, run.returncode
    if run.timed_out:
        return Outcome(ResultStatus.TIMED_OUT, None, kept, total, f"timed out after {timeout_s:g} s")
    if control.stop_reason is not None and not (run.exited and code == 0):
        return Outcome(ResultStatus.FAILED, None, kept, total, control.stop_reason)
    if code is None:
        return Outcome(ResultStatus.FAILED, None, kept, total, f"process {run.pid} did not die after SIGKILL")
    if code == 0:
        return Outcome(ResultStatus.SUCCEEDED, 0, kept, total)
    if code < 0:
        return Outcome(ResultStatus.FAILED, 128 - code, kept, total, f"killed by {signal_name(-code)}")
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
