"""Following a task as it runs: the live progress table, the executions and their outputs."""

from __future__ import annotations

import datetime
import json
import time

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from fleetlink.cli.render import (
    EXECUTION_STYLE,
    TASK_STATE_STYLE,
    Column,
    count_line,
    duration,
    err,
    first_line,
    now_ms,
    out,
    print_table,
    section,
    styled,
)
from fleetlink.client.operator import OperatorClient
from fleetlink.contract.tasks import ExecutionSummary, TaskDetail
from fleetlink.core.tasks.model import ExecutionStatus, Task


def _what(task: Task) -> str:
    if task.command is not None:
        return task.command
    return f"{task.type} {json.dumps(task.input, separators=(',', ':'))}" if task.input else task.type


def _execution_duration(execution: ExecutionSummary, now_ms: int) -> str:
    if execution.duration_ms is not None:
        return duration(execution.duration_ms)
    if execution.started_at is not None and execution.finished_at is None:
        return duration(now_ms - execution.started_at) + "…"
    return "-"


def _execution_rows(task: TaskDetail) -> list[list[str]]:
    now = now_ms()
    rows = []
    for execution in sorted(task.executions, key=lambda e: e.agent_id):
        shown = first_line(execution.output or "")
        if not shown and execution.error:
            shown = f"error: {first_line(execution.error)}"
        rows.append(
            [
                execution.agent_id,
                styled(execution.status, EXECUTION_STYLE),
                str(execution.attempt),
                "-" if execution.exit_code is None else str(execution.exit_code),
                _execution_duration(execution, now),
                escape(shown),
            ]
        )
    return rows


_EXECUTION_COLUMNS = (
    Column("AGENT"),
    Column("STATUS"),
    Column("ATTEMPT", justify="right"),
    Column("EXIT", justify="right"),
    Column("DURATION", justify="right"),
    Column("OUTPUT", max_width=60),
)


def _task_title(task: TaskDetail) -> str:
    return f"{task.task_id} {escape(first_line(_what(task), 70))}: {styled(task.state, TASK_STATE_STYLE)}"


def _live_view(task: TaskDetail) -> Group:
    table = Table(title=_task_title(task), title_justify="left")
    for column in _EXECUTION_COLUMNS:
        table.add_column(
            column.name,
            justify=column.justify,
            no_wrap=True,
            max_width=column.max_width,
        )
    for row in _execution_rows(task):
        table.add_row(*row)
    return Group(table, count_line(task.counts) or "[dim]no executions[/dim]")


def _print_executions(task: TaskDetail) -> None:
    print_table(_EXECUTION_COLUMNS, _execution_rows(task), title=_task_title(task))
    counts = count_line(task.counts)
    if counts:
        out().print(counts)


def _print_outputs(task: TaskDetail) -> None:
    """Each agent's output in full (as kept by the server), under a heading naming the agent and outcome."""
    console = out()
    for execution in sorted(task.executions, key=lambda e: e.agent_id):
        if not (execution.output or execution.error):
            continue
        outcome = execution.status + ("" if execution.exit_code is None else f", exit {execution.exit_code}")
        style = EXECUTION_STYLE.get(execution.status, "default")
        section(f"{execution.agent_id} [{style}]{escape(outcome)}[/]")
        if execution.output:
            console.out(execution.output.rstrip("\n"), highlight=False)
        if execution.output_truncated:
            total = f" of {execution.output_bytes} bytes" if execution.output_bytes is not None else ""
            console.print(f"[dim](output truncated: the start{total} is kept)[/dim]")
        if execution.error:
            console.print(f"[red]error:[/red] {escape(execution.error)}")


def _all_succeeded(task: TaskDetail) -> bool:
    return bool(task.executions) and all(e.status is ExecutionStatus.SUCCEEDED for e in task.executions)


class WaitTimedOut(Exception):
    """--wait-timeout passed before the task ended."""

    def __init__(self, task: TaskDetail) -> None:
        self.task = task


def _clock() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S")


def _follow(
    client: OperatorClient, task_id: str, poll_s: float, deadline: float | None, *, live: bool
) -> TaskDetail:
    """Follow the task until it ends; ``live``: a redrawn table, else a line per change of status.

    Raises :class:`WaitTimedOut` once ``deadline`` (monotonic) passes."""
    task = client.get_task(task_id)

    def wait() -> TaskDetail:
        remaining = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
        if remaining <= 0:
            raise WaitTimedOut(task)
        time.sleep(remaining)
        return client.get_task(task_id)

    if live:
        with Live(_live_view(task), console=out(), auto_refresh=False) as view:
            while not task.done:
                task = wait()
                view.update(_live_view(task), refresh=True)
        return task
    seen: dict[str, str] = {}
    console = err()
    while True:
        for execution in sorted(task.executions, key=lambda e: e.agent_id):
            if seen.get(execution.execution_id) != execution.status:
                seen[execution.execution_id] = execution.status
                console.print(
                    f"[dim]{_clock()}[/dim] {execution.agent_id} {styled(execution.status, EXECUTION_STYLE)}"
                )
        if task.done:
            return task
        task = wait()
