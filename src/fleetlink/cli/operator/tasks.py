"""``fleetlink tasks``: run commands on agents, follow them, list and cancel tasks."""

from __future__ import annotations

import itertools
import json
import shlex
import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from fleetlink.agent.client import OperatorClient
from fleetlink.cli.operator import OperatorTokenOption, UrlOption, operator_client
from fleetlink.cli.render import (
    EXECUTION_STYLE,
    TASK_STATE_STYLE,
    ago,
    count_line,
    duration,
    err,
    first_line,
    now_ms,
    out,
    reporting_errors,
    styled,
    when,
)
from fleetlink.contract.tasks import ExecutionSummary, TaskDetail
from fleetlink.core.tasks.model import ExecutionStatus, Task, TaskState

tasks_app = typer.Typer(
    help="Operator: run commands on agents, follow them, list and cancel tasks.", no_args_is_help=True
)


def parse_targets(targets: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """``tag:KEY=VALUE`` and ``agent:AGENT_ID`` (or a bare ``agt_...``) as (agent ids, tags)."""
    agent_ids: list[str] = []
    tags: dict[str, str] = {}
    for target in targets or []:
        kind, sep, rest = target.partition(":")
        if kind == "tag" and sep:
            key, eq, value = rest.partition("=")
            if not eq or not key.strip():
                raise typer.BadParameter(f"{target!r}: a tag target is tag:KEY=VALUE", param_hint="--target")
            tags[key.strip()] = value.strip()
        elif kind == "agent" and sep and rest.strip():
            agent_ids.append(rest.strip())
        elif not sep and target.startswith("agt_"):
            agent_ids.append(target)
        else:
            raise typer.BadParameter(
                f"{target!r} is neither tag:KEY=VALUE nor agent:AGENT_ID", param_hint="--target"
            )
    if not agent_ids and not tags:
        raise typer.BadParameter("name at least one target", param_hint="--target")
    return agent_ids, tags


def shell_command(words: list[str]) -> str:
    """The command line to run: one word is taken as shell text as is; several are quoted and joined."""
    return words[0] if len(words) == 1 else shlex.join(words)


def _what(task: Task) -> str:
    if task.command is not None:
        return task.command
    return f"{task.type} {json.dumps(task.input, separators=(',', ':'))}" if task.input else task.type


def _executionduration(execution: ExecutionSummary, now_ms: int) -> str:
    if execution.duration_ms is not None:
        return duration(execution.duration_ms)
    if execution.started_at is not None and execution.finished_at is None:
        return duration(now_ms - execution.started_at) + "…"
    return "-"


def _executions_table(task: TaskDetail) -> Table:
    now = now_ms()
    table = Table(
        title=f"{task.task_id} {escape(first_line(_what(task), 70))}: {styled(task.state, TASK_STATE_STYLE)}",
        title_justify="left",
    )
    table.add_column("AGENT", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("ATTEMPT", justify="right", no_wrap=True)
    table.add_column("EXIT", justify="right", no_wrap=True)
    table.add_column("DURATION", justify="right", no_wrap=True)
    table.add_column("OUTPUT", overflow="ellipsis", no_wrap=True)
    for execution in sorted(task.executions, key=lambda e: e.agent_id):
        shown = first_line(execution.output or "")
        if not shown and execution.error:
            shown = f"error: {first_line(execution.error)}"
        table.add_row(
            execution.agent_id,
            styled(execution.status, EXECUTION_STYLE),
            str(execution.attempt),
            "-" if execution.exit_code is None else str(execution.exit_code),
            _executionduration(execution, now),
            escape(shown),
        )
    return table


def _progress(task: TaskDetail) -> Group:
    return Group(_executions_table(task), count_line(task.counts) or "[dim]no executions[/dim]")


def _print_outputs(task: TaskDetail) -> None:
    """Each agent's output in full (as kept by the server), under a rule naming the agent and outcome."""
    console = out()
    for execution in sorted(task.executions, key=lambda e: e.agent_id):
        if not (execution.output or execution.error):
            continue
        outcome = execution.status + ("" if execution.exit_code is None else f", exit {execution.exit_code}")
        console.rule(
            f"{execution.agent_id} [{EXECUTION_STYLE.get(execution.status, 'default')}]{escape(outcome)}[/]",
            align="left",
        )
        if execution.output:
            console.out(execution.output.rstrip("\n"), highlight=False)
        if execution.output_truncated:
            total = f" of {execution.output_bytes} bytes" if execution.output_bytes is not None else ""
            console.print(f"[dim](output truncated: the start{total} is kept)[/dim]")
        if execution.error:
            console.print(f"[red]error:[/red] {escape(execution.error)}")


def _all_succeeded(task: TaskDetail) -> bool:
    return bool(task.executions) and all(e.status is ExecutionStatus.SUCCEEDED for e in task.executions)


def _follow(client: OperatorClient, task_id: str, poll_s: float) -> TaskDetail:
    """Show a live per-agent table until the task is finished or cancelled; return its last state."""
    task = client.get_task(task_id)
    console = out()
    if not console.is_terminal:  # piped: no redrawing, just the final table
        while not task.done:
            time.sleep(poll_s)
            task = client.get_task(task_id)
        console.print(_progress(task))
        return task
    with Live(_progress(task), console=console, auto_refresh=False) as live:
        while not task.done:
            time.sleep(poll_s)
            task = client.get_task(task_id)
            live.update(_progress(task), refresh=True)
    return task


@tasks_app.command(
    "run", context_settings={"allow_interspersed_args": False, "help_option_names": ["--help", "-h"]}
)
def run_task(
    url: UrlOption,
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The command, after --; one argument is shell text, several are quoted"),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="tag:KEY=VALUE or agent:AGENT_ID; repeat (all tags must match)"),
    ] = None,
    task_type: Annotated[
        str, typer.Option("--type", help="Task type: shell, or one an agent handles")
    ] = "shell",
    timeout: Annotated[int, typer.Option("--timeout", min=1, max=86_400, help="Seconds per attempt")] = 300,
    priority: Annotated[int, typer.Option("--priority", min=-1000, max=1000, help="Higher runs first")] = 0,
    retries: Annotated[int, typer.Option("--retries", min=0, max=10, help="Retries after a failure")] = 0,
    input_json: Annotated[
        str | None, typer.Option("--input", help="JSON object: the input of a non-shell task")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Follow the task until it ends (default), or just send it"),
    ] = True,
    poll: Annotated[float, typer.Option("--poll", min=0.1, help="Seconds between progress checks")] = 1.0,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Send a task to agents and show live progress per agent; exit 0 only if every agent succeeded.

    Example: fleetlink tasks run --target tag:role=web -- uptime
    """
    agent_ids, tags = parse_targets(target)
    words = list(command or [])
    task_input: dict[str, Any] | None = None
    if input_json is not None:
        try:
            task_input = json.loads(input_json)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--input") from None
        if not isinstance(task_input, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--input")
    if task_type == "shell" and not words:
        raise typer.BadParameter("give the command after --, e.g. -- uptime", param_hint="COMMAND")
    if task_type != "shell" and words:
        raise typer.BadParameter(f"a {task_type} task takes --input, not a command", param_hint="COMMAND")
    with reporting_errors(), operator_client(url, operator_token) as client:
        created = client.create_task(
            type=task_type,
            command=shell_command(words) if words else None,
            input=task_input,
            agent_ids=agent_ids,
            tags=tags,
            priority=priority,
            timeout_seconds=timeout,
            max_retries=retries,
        )
        err().print(f"task {created.task_id}: {created.executions} execution(s)")
        if not wait:
            typer.echo(created.task_id)
            return
        try:
            task = _follow(client, created.task_id, poll)
        except KeyboardInterrupt:
            err().print(f"stopped following; the task goes on: fleetlink tasks show {created.task_id}")
            raise typer.Exit(130) from None
    _print_outputs(task)
    if not _all_succeeded(task):
        raise typer.Exit(1)


def _task_details(task: TaskDetail) -> Table:
    details = Table(show_header=False, box=None)
    details.add_column(style="bold", no_wrap=True)
    details.add_column(overflow="fold")
    targets = task.targets
    target_text = ", ".join(
        [f"agent:{a}" for a in targets.agent_ids] + [f"tag:{k}={v}" for k, v in sorted(targets.tags.items())]
    )
    rows: dict[str, str] = {
        "id": escape(task.task_id),
        "type": escape(task.type),
        "command" if task.command is not None else "input": escape(
            task.command if task.command is not None else json.dumps(task.input)
        ),
        "state": styled(task.state, TASK_STATE_STYLE),
        "targets": escape(target_text or "-"),
        "priority": str(task.priority),
        "timeout": f"{task.timeout_seconds}s",
        "retries": str(task.max_retries),
        "created": f"{when(task.created_at)} ({ago(task.created_at)})"
        + (f" by {escape(task.created_by)}" if task.created_by else ""),
    }
    if task.finished_at is not None:
        rows["finished"] = when(task.finished_at)
    if task.cancelled_at is not None:
        rows["cancelled"] = when(task.cancelled_at)
    if task.counts:
        rows["executions"] = count_line(task.counts)
    for field, value in rows.items():
        details.add_row(field, value)
    return details


@tasks_app.command("show")
def show_task(
    task_id: Annotated[str, typer.Argument(help="Task id (tsk_...)")],
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Show a task: its details, a row per agent, and every agent's output."""
    with reporting_errors(), operator_client(url, operator_token) as client:
        task = client.get_task(task_id)
    out().print(_task_details(task))
    out().print(_executions_table(task))
    _print_outputs(task)


@tasks_app.command("ls")
def list_tasks(
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
    state: Annotated[TaskState | None, typer.Option("--state", help="Only tasks in this state")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many tasks")] = 50,
) -> None:
    """List tasks, newest first."""
    with reporting_errors(), operator_client(url, operator_token) as client:
        tasks = list(itertools.islice(client.iter_tasks(state=state, page_size=min(limit, 100)), limit))
    if not tasks:
        err().print("no tasks")
        return
    table = Table()
    table.add_column("ID", no_wrap=True, min_width=max(len(t.task_id) for t in tasks))
    table.add_column("TYPE", no_wrap=True)
    table.add_column("COMMAND", overflow="ellipsis", no_wrap=True, max_width=60)
    table.add_column("STATE", no_wrap=True)
    table.add_column("EXECUTIONS", overflow="fold")
    table.add_column("CREATED", no_wrap=True)
    now = now_ms()
    for task in tasks:
        executions = str(task.execution_count or "-")
        table.add_row(
            task.task_id,
            escape(task.type),
            escape(first_line(_what(task), 60)),
            styled(task.state, TASK_STATE_STYLE),
            executions,
            ago(task.created_at, now),
        )
    out().print(table)


@tasks_app.command("cancel")
def cancel_task(
    task_id: Annotated[str, typer.Argument(help="Task id (tsk_...)")],
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Cancel a task: queued executions end now, running ones are stopped by their agents (idempotent)."""
    with reporting_errors(), operator_client(url, operator_token) as client:
        task = client.cancel_task(task_id)
    counts = count_line(task.counts)
    out().print(f"{task.task_id} {styled(task.state, TASK_STATE_STYLE)}" + (f": {counts}" if counts else ""))
    if any(task.counts.get(status) for status in (ExecutionStatus.LEASED, ExecutionStatus.RUNNING)):
        err().print("[dim]running executions stop when their agents next check in[/dim]")
