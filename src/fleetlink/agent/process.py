"""Processes the agent starts: run one in a process group of its own, stop the whole group, and tell
from /proc whether a group recorded earlier is still alive and still ours.

A command runs as a new session (its own process group) with stdout and stderr on pipes of their
own; a timeout or stop kills the whole group (SIGTERM, then SIGKILL after a grace), and whatever
the command left running in its group ends with it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

#: Between SIGTERM and SIGKILL to a process group.
KILL_GRACE_S = 2.0
#: How long to wait for the output pipe to close once the group's processes are gone.
DRAIN_GRACE_S = 2.0


@dataclass
class Control:
    """How the loop reaches a running execution: ask it to stop, and wake its worker."""

    wake: threading.Event = field(default_factory=threading.Event)
    stop_reason: str | None = None

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.wake.set()


class OutputCollector(threading.Thread):
    """Reads a pipe to its end: keeps its first and last ``cap`` bytes, counts them all, and holds
    what was not taken yet (:meth:`take_new`, at most ``live_cap`` bytes; older untaken bytes are
    counted as skipped) for whoever streams it."""

    def __init__(self, stream: IO[bytes], cap: int, live_cap: int = 0) -> None:
        super().__init__(name="process-output", daemon=True)
        self._stream = stream
        self._cap = cap
        self._live_cap = live_cap
        self._head = bytearray()
        self._tail = bytearray()
        self._new = bytearray()
        self._skipped = 0
        self._lock = threading.Lock()
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
                self._keep(data)

    def _keep(self, data: bytes) -> None:
        with self._lock:
            self.total += len(data)
            room = self._cap - len(self._head)
            if room > 0:
                self._head += data[:room]
            self._tail += data
            del self._tail[: max(0, len(self._tail) - self._cap)]
            if self._live_cap:
                self._new += data
                over = len(self._new) - self._live_cap
                if over > 0:
                    del self._new[:over]
                    self._skipped += over

    def take_new(self) -> tuple[bytes, int]:
        """The bytes read since the last call, and how many before them were dropped untaken."""
        with self._lock:
            data, skipped = bytes(self._new), self._skipped
            self._new.clear()
            self._skipped = 0
        return data, skipped

    def halt(self) -> None:
        """Stop reading even though the pipe is still open (someone outside the group holds it)."""
        self._halt.set()

    def output(self) -> bytes:
        """The whole output when it fit in head and tail; else the head then the tail."""
        with self._lock:
            if self.total <= 2 * self._cap:
                return bytes(self._head) + bytes(
                    self._tail[len(self._tail) - (self.total - len(self._head)) :]
                )
            return bytes(self._head) + bytes(self._tail)


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


@dataclass(frozen=True)
class Finished:
    """How a process run in its own group ended."""

    pid: int
    returncode: int | None
    output: bytes
    output_bytes: int
    timed_out: bool
    #: Whether the process exited on its own before being stopped or timing out.
    exited: bool
    stderr: bytes = b""
    stderr_bytes: int = 0


def run_in_group(
    argv: Sequence[str],
    timeout_s: float,
    control: Control,
    *,
    output_cap: int,
    on_start: Callable[[int], None] = lambda pid: None,
    on_output: Callable[[OutputCollector, OutputCollector], None] = lambda stdout, stderr: None,
    live_cap: int = 0,
    env: Mapping[str, str] | None = None,
    kill_grace_s: float = KILL_GRACE_S,
) -> Finished:
    """Run ``argv`` in its own process group until it exits, times out or is stopped; keep the first
    and last ``output_cap`` bytes of its stdout and of its stderr. ``on_start(pid)`` runs once the
    process exists (its pid is also its process group id); ``on_output(stdout, stderr)`` hands over
    the collectors for streaming (each holds up to ``live_cap`` new bytes). The group is killed on
    the way out, whatever happened.
    """
    process = subprocess.Popen(  # noqa: S603 - running the operator's command is the point
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
        env=None if env is None else {**os.environ, **env},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    pgid = process.pid
    collectors = (
        OutputCollector(process.stdout, output_cap, live_cap),
        OutputCollector(process.stderr, output_cap, live_cap),
    )
    for collector in collectors:
        collector.start()
    exited = threading.Event()

    def wait_for_exit() -> None:
        process.wait()
        exited.set()
        control.wake.set()

    waiter = threading.Thread(target=wait_for_exit, name="process-wait", daemon=True)
    waiter.start()
    timed_out = False
    try:
        on_start(process.pid)
        on_output(*collectors)
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
        drain_until = time.monotonic() + DRAIN_GRACE_S
        for collector in collectors:
            collector.join(max(0.0, drain_until - time.monotonic()))
            if collector.is_alive():
                collector.halt()
                collector.join()
        process.stdout.close()
        process.stderr.close()
    stdout, stderr = collectors
    return Finished(
        pgid,
        process.returncode,
        stdout.output(),
        stdout.total,
        timed_out,
        exited.is_set(),
        stderr.output(),
        stderr.total,
    )


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --- is a process group recorded earlier still there? --------------------------------------------

_PROC = Path("/proc")
#: How far the start time of a live group leader may be from the recorded one and still be ours.
START_TIME_TOLERANCE_MS = 60_000


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgrp, starttime in clock ticks) from /proc/<pid>/stat, or None."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces and parens
    try:
        return fields[0], int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _boot_time_ms() -> int | None:
    try:
        for line in (_PROC / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) * 1000
    except (OSError, ValueError):
        pass
    return None


def _proc_group_members(pgid: int) -> list[int] | None:
    """Live (non-zombie) pids in process group ``pgid`` per /proc, or None without /proc."""
    if not (_PROC / "self" / "stat").exists():
        return None
    members = []
    for entry in os.scandir(_PROC):
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` still has a live member (zombies awaiting a reaper don't count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but not ours to signal
    members = _proc_group_members(pgid)
    return True if members is None else bool(members)


def is_our_group(pgid: int, started_at_ms: int | None) -> bool:
    """Whether process group ``pgid``, started at ``started_at_ms``, is alive and still the one we started.

    A pid number is not reused while it names a live process group, so a group whose leader is gone
    is ours; a live leader must also have started when we started it (within a minute), so a
    recycled pid of some other session leader is never mistaken for our task.
    """
    if not group_alive(pgid):
        return False
    stat = _proc_stat(pgid)
    boot_ms = _boot_time_ms()
    if stat is None or boot_ms is None or started_at_ms is None:
        return True  # leader gone (the group is ours) or no /proc to tell: assume ours
    ticks = os.sysconf("SC_CLK_TCK")
    started_ms = boot_ms + stat[2] * 1000 // ticks
    return abs(started_ms - started_at_ms) <= START_TIME_TOLERANCE_MS
