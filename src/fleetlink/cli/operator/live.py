"""Following a task as it runs: the live progress table, the executions and their outputs, each agent
shown by name (the wait itself: ``cli/waiting.py``)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from rich.console import Group
from rich.table import Table

from fleetlink.cli.render import (
    EXECUTION_STYLE,
    TASK_STATE_STYLE,
    Column,
    count_line,
    duration,
    escape,
    first_line,
    now_ms,
    out,
    print_table,
    styled,
)
from fleetlink.cli.waiting import name_of, print_result
from fleetlink.contract.tasks import ExecutionSummary, TaskDetail
from fleetlink.core.tasks.model import Task


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


def _execution_rows(task: TaskDetail, names: Mapping[str, str]) -> list[list[str]]:
    now = now_ms()
    rows = []
    for execution in sorted(task.executions, key=lambda e: name_of(e.agent_id, names)):
        shown = first_line(execution.output or "")
        if not shown and execution.error:
            shown = f"error: {first_line(execution.error)}"
        rows.append(
            [
                escape(name_of(execution.agent_id, names)),
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
    Column("ID"),
    Column("STATUS"),
    Column("ATTEMPT", justify="right"),
    Column("EXIT", justify="right"),
    Column("DURATION", justify="right"),
    Column("OUTPUT", max_width=60),
)


def _task_title(task: TaskDetail) -> str:
    return f"{task.task_id} {escape(first_line(_what(task), 70))}: {styled(task.state, TASK_STATE_STYLE)}"


def _live_view(task: TaskDetail, names: Mapping[str, str]) -> Group:
    table = Table(title=_task_title(task), title_justify="left")
    for column in _EXECUTION_COLUMNS:
        table.add_column(
            column.name,
            justify=column.justify,
            no_wrap=True,
            max_width=column.max_width,
        )
    for row in _execution_rows(task, names):
        table.add_row(*row)
    return Group(table, count_line(task.counts) or "[dim]no executions[/dim]")


def _print_executions(task: TaskDetail, names: Mapping[str, str]) -> None:
    print_table(_EXECUTION_COLUMNS, _execution_rows(task, names), title=_task_title(task))
    counts = count_line(task.counts)
    if counts:
        out().print(counts)


def _print_outputs(task: TaskDetail, names: Mapping[str, str]) -> None:
    """Each agent's output in full (as kept by the server), under a heading naming the agent and outcome."""
    console = out()
    for execution in sorted(task.executions, key=lambda e: name_of(e.agent_id, names)):
        if execution.output or execution.error:
            print_result(console, execution, names)
