"""One small supervisor process per execution: the command's outcome outlives the daemon.

The daemon does not run a shell task itself: it starts ``python -m fleetlink.agent.tasks.supervisor
RUN_DIR`` in a session of its own, and the supervisor starts the command (in its own process group,
stdout and stderr to the files ``stdout`` and ``stderr`` of the run dir), waits for it, and writes
``outcome.json`` (exit code or signal, start and end times; written to a temporary file, synced,
then renamed) as the command ends. A daemon killed meanwhile leaves both running; restarted, it
finds the run dir of each execution it had in flight (``<state dir>/runs/<execution>-<attempt>``):

- ``outcome.json`` there: the recorded outcome is reported, with the output (a command that
  succeeded is never run again);
- the supervisor still alive: the daemon adopts it (renews the lease, waits for the outcome, can
  still time it out or cancel it);
- neither: the command died with the node (power loss, kill of its group), reported as such.

The run dir holds ``spec.json`` (what to run, written by the daemon before the start) and
``started.json`` (the supervisor's and the command's pids and the start time).

A typed task whose handler the daemon knows by reference runs the same way: the supervisor's
command is then ``python -m fleetlink.agent.tasks.handler_process RUN_DIR``, which calls the
handler on the task's input and leaves its JSON result in ``stdout`` (or why it failed in ``error``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetlink.agent.process import Control, is_our_group, kill_group, signal_name

RUNS_DIR = "runs"
SPEC = "spec.json"
STARTED = "started.json"
OUTCOME = "outcome.json"
STDOUT = "stdout"
STDERR = "stderr"
#: A handler's failure, as the handler process wrote it (a typed task's error).
ERROR = "error"
SHELL_PATH = "/bin/sh"
#: How often the daemon looks for the outcome while a command runs (it is also woken on stop).
POLL_S = 0.1
#: How long the daemon waits for a supervisor it started to say it started the command.
START_TIMEOUT_S = 30.0


def run_dir(state_dir: Path, execution_id: str, attempt: int) -> Path:
    return state_dir / RUNS_DIR / f"{execution_id}-{attempt}"


@dataclass(frozen=True)
class Recorded:
    """How a supervised command ended, as its supervisor wrote it."""

    started_at: int
    finished_at: int
    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    output_bytes: int
    #: Sizes of each file (``stdout``/``stderr`` hold its head and tail when larger than twice the cap).
    stdout_bytes: int = 0
    stderr_bytes: int = 0

    @property
    def output(self) -> bytes:
        """stdout, then stderr (the result's one inline output; the files keep them apart)."""
        return self.stdout + self.stderr


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- the daemon's side ------------------------------------------------------------------------------


def launch(folder: Path, spec: Mapping[str, Any]) -> subprocess.Popen[bytes]:
    """Write the spec and start the supervisor, detached (its own session): it outlives the daemon."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_atomic(folder / SPEC, dict(spec))
    return subprocess.Popen(  # noqa: S603 - our own module, by this interpreter
        [sys.executable, "-m", "fleetlink.agent.tasks.supervisor", str(folder)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def started(folder: Path) -> dict[str, int] | None:
    """``started.json``: ``supervisor`` and ``command`` pids and ``started_at``, once written."""
    found: dict[str, int] | None = _read_json(folder / STARTED)
    return found


def recorded(folder: Path, output_cap: int) -> Recorded | None:
    """The outcome the supervisor recorded, with the first ``output_cap`` bytes of output; None if none."""
    outcome = _read_json(folder / OUTCOME)
    if outcome is None:
        return None
    streams = [_head_and_tail(folder / name, output_cap) for name in (STDOUT, STDERR)]
    stdout, stderr = streams[0][0], streams[1][0]
    return Recorded(
        started_at=int(outcome["started_at"]),
        finished_at=int(outcome["finished_at"]),
        exit_code=outcome.get("exit_code"),
        signal=outcome.get("signal"),
        stdout=stdout,
        stderr=stderr,
        output_bytes=streams[0][1] + streams[1][1],
        stdout_bytes=streams[0][1],
        stderr_bytes=streams[1][1],
    )


def alive(folder: Path) -> bool:
    """Whether the supervisor of this run dir still runs (it is the one we started)."""
    found = started(folder)
    if found is None:
        return False
    return is_our_group(int(found["supervisor"]), int(found["started_at"]))


def shell_spec(command: str, env: Mapping[str, str] | None) -> dict[str, Any]:
    """The spec of a shell execution: ``/bin/sh -c command`` with ``env`` added."""
    return {"command": command, "env": dict(env or {})}


def handler_spec(
    reference: str, task_input: Mapping[str, Any], env: Mapping[str, str] | None
) -> dict[str, Any]:
    """The spec of a typed execution: the handler ``reference`` called on ``task_input``, on the daemon's
    import path (a ``--handler`` module found there is found again)."""
    return {"handler": reference, "input": dict(task_input), "path": list(sys.path), "env": dict(env or {})}


def recorded_error(folder: Path) -> str | None:
    """Why a handler failed, as its process wrote it (None: it wrote nothing)."""
    try:
        return (folder / ERROR).read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def supervise(
    folder: Path,
    spec: Mapping[str, Any],
    timeout_s: float,
    control: Control,
    *,
    on_start: Callable[[int], None],
    output_cap: int,
    kill_grace_s: float,
) -> tuple[Recorded | None, str | None]:
    """Run ``spec`` under a supervisor (or adopt the one already running in ``folder``) until it
    ends, times out or is stopped; the recorded outcome and why it was stopped (``"timeout"``, the
    stop reason, or None). None as outcome: the supervisor died without recording one."""
    child = None  # the supervisor, when this daemon started it (else adopted: not our child)
    if started(folder) is None:
        child = launch(folder, spec)
        deadline = time.monotonic() + START_TIMEOUT_S
        while started(folder) is None and child.poll() is None:
            if time.monotonic() > deadline:
                return None, f"the supervisor did not start within {START_TIMEOUT_S:g} s"
            control.wake.wait(POLL_S)

    def gone() -> bool:
        return child.poll() is not None if child is not None else not alive(folder)

    info = started(folder) or {}
    if "command" in info:
        on_start(int(info["command"]))
    began = int(info.get("started_at", now_ms()))
    deadline = time.monotonic() + timeout_s - max(0, now_ms() - began) / 1000
    stopped: str | None = None
    while (outcome := recorded(folder, output_cap)) is None:
        if stopped is None and (control.stop_reason is not None or time.monotonic() >= deadline):
            stopped = control.stop_reason or "timeout"
            if "command" in info:
                kill_group(int(info["command"]), kill_grace_s)
        if gone() and recorded(folder, 0) is None:
            return None, stopped
        control.wake.wait(POLL_S)
        control.wake.clear()
    return outcome, stopped


def forget(folder: Path) -> None:
    """Remove a run dir once its outcome is stored (best effort)."""
    shutil.rmtree(folder, ignore_errors=True)


def describe_signal(number: int) -> str:
    return f"killed by {signal_name(number)}"


# --- the supervisor process ----------------------------------------------------------------------------


def main(folder: Path) -> int:
    """Run the spec's command to its end and record how it ended."""
    spec = _read_json(folder / SPEC)
    if spec is None:
        return 2
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the daemon's terminal going away is not our end
    with open(folder / STDOUT, "wb") as out, open(folder / STDERR, "wb") as err:
        started_at = now_ms()
        if "handler" in spec:
            argv = [sys.executable, "-m", "fleetlink.agent.tasks.handler_process", str(folder)]
        else:
            argv = [SHELL_PATH, "-c", str(spec["command"])]
        process = subprocess.Popen(  # noqa: S603 - the operator's command (or handler), as designed
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env={**os.environ, **spec.get("env", {})},
            start_new_session=True,  # its own group: a timeout or cancel stops all of it, not us
        )
        _write_atomic(
            folder / STARTED, {"supervisor": os.getpid(), "command": process.pid, "started_at": started_at}
        )
        code = process.wait()
        out.flush()
        os.fsync(out.fileno())
        err.flush()
        os.fsync(err.fileno())
    outcome: dict[str, Any] = {"started_at": started_at, "finished_at": now_ms()}
    outcome |= {"exit_code": None, "signal": -code} if code < 0 else {"exit_code": code, "signal": None}
    _write_atomic(folder / OUTCOME, outcome)
    return 0


def _write_atomic(path: Path, value: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _head_and_tail(path: Path, cap: int) -> tuple[bytes, int]:
    """The first and last ``cap`` bytes of a file (all of it when it is small), and its size."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size <= 2 * cap:
                return handle.read(), size
            head = handle.read(cap)
            handle.seek(size - cap)
            return head + handle.read(cap), size
    except OSError:
        return b"", 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
