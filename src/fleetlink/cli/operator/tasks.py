"""``fleetlink tasks``: run commands on agents, follow them, list and cancel tasks (targets:
``cli/operator/targets.py``; following a run: ``cli/operator/live.py``)."""

from __future__ import annotations

import itertools
import json
import shlex
import time
from typing import Annotated, Any

import typer
from rich.markup import escape

from fleetlink.cli.operator import OperatorTokenOption, UrlOption, operator_client
from fleetlink.cli.operator.live import (
    WaitTimedOut,
    _all_succeeded,
    _follow,
    _print_executions,
    _print_outputs,
    _what,
)
from fleetlink.cli.operator.targets import (
    DEFAULT_DELIVERY_TIMEOUT_S,
    MAX_TARGET_IDS,
    _agents_named,
    parse_targets,
    resolve_names,
    warn_offline,
)
from fleetlink.cli.render import (
    TASK_STATE_STYLE,
    CallContext,
    Column,
    JsonOption,
    OutputFormat,
    OutputOption,
    ago,
    count_line,
    duration,
    err,
    first_line,
    now_ms,
    out,
    parse_seconds,
    print_details,
    print_json,
    print_table,
    reporting_errors,
    styled,
    wants_json,
    when,
)
from fleetlink.contract.agents import AgentSummary
from fleetlink.contract.tasks import TaskDetail, TaskSummary
from fleetlink.core.entities import AgentState
from fleetlink.core.tasks.model import ExecutionStatus, TaskState

tasks_app = typer.Typer(
    help="Operator: run commands on agents, follow them, list and cancel tasks.", no_args_is_help=True
)

#: Exit status of `tasks run` when --wait-timeout ends the wait (as timeout(1) does).
WAIT_TIMEOUT_EXIT = 124


def shell_command(words: list[str]) -> str:
    """The command line to run: one word is taken as shell text as is; several are quoted and joined."""
    return words[0] if len(words) == 1 else shlex.join(words)


@tasks_app.command(
    "run", context_settings={"allow_interspersed_args": False, "help_option_names": ["--help", "-h"]}
)
def run_task(
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The command, after --; one argument is shell text, several are quoted"),
    ] = None,
    url: UrlOption = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            "-t",
            help="An agent id (agt_...), tag:KEY=VALUE, an agent name or glob (web-*), or all; repeat "
            "for more (agents named by id or name, plus those carrying every tag)",
        ),
    ] = None,
    task_type: Annotated[
        str, typer.Option("--type", help="Task type: shell, or one an agent handles")
    ] = "shell",
    timeout: Annotated[
        int, typer.Option("--timeout", parser=parse_seconds, help="Per attempt: 90, 90s, 10m, 2h (max 1d)")
    ] = 300,
    priority: Annotated[int, typer.Option("--priority", min=-1000, max=1000, help="Higher runs first")] = 0,
    retries: Annotated[int, typer.Option("--retries", min=0, max=10, help="Retries after a failure")] = 0,
    max_concurrency: Annotated[
        int | None, typer.Option("--max-concurrency", min=1, help="At most this many agents run it at once")
    ] = None,
    max_errors: Annotated[
        int | None,
        typer.Option(
            "--max-errors",
            min=1,
            help="Error budget: once this many executions failed, the queued rest are cancelled (by the "
            "server, whether or not this command still watches)",
        ),
    ] = None,
    delivery_timeout: Annotated[
        int | None,
        typer.Option(
            "--delivery-timeout",
            parser=parse_seconds,
            help="How long an execution waits for an offline agent before it expires: 10m, 2h, 1d "
            "(min 60s; default 1d)",
            show_default=False,
        ),
    ] = None,
    wait_timeout: Annotated[
        int | None,
        typer.Option(
            "--wait-timeout",
            parser=parse_seconds,
            help=f"Stop waiting after this long (exit {WAIT_TIMEOUT_EXIT}); the task goes on",
            show_default=False,
        ),
    ] = None,
    input_json: Annotated[
        str | None, typer.Option("--input", help="JSON object: the input of a non-shell task")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Follow the task until it ends (default), or just send it"),
    ] = True,
    poll: Annotated[float, typer.Option("--poll", min=0.1, help="Seconds between progress checks")] = 1.0,
    output: OutputOption = OutputFormat.TABLE,
    as_json: JsonOption = False,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Send a task to agents and show live progress per agent; exit 0 only if every agent succeeded.

    Examples: fleetlink tasks run --target tag:role=web -- uptime;
    fleetlink tasks run -t 'web-*' --max-concurrency 2 --max-errors 1 -- ./deploy.sh
    """
    targets = parse_targets(target)
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
    if delivery_timeout is not None and delivery_timeout < 60:
        raise typer.BadParameter("at least 60 seconds", param_hint="--delivery-timeout")
    json_out = wants_json(output, as_json)
    deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
    with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
        known: list[AgentSummary] = []
        if targets.names or targets.everyone:
            known = resolve_names(targets, client.iter_agents(status=AgentState.ACTIVE, page_size=100))
        agent_ids = list(dict.fromkeys([*targets.agent_ids, *(agent.agent_id for agent in known)]))
        if len(agent_ids) > MAX_TARGET_IDS:
            raise typer.BadParameter(
                f"{len(agent_ids)} agents; a task names at most {MAX_TARGET_IDS}: target a tag instead",
                param_hint="--target",
            )
        created = client.create_task(
            type=task_type,
            command=shell_command(words) if words else None,
            input=task_input,
            agent_ids=agent_ids,
            tags=targets.tags,
            priority=priority,
            timeout_seconds=timeout,
            max_retries=retries,
            delivery_timeout_seconds=delivery_timeout,
            max_concurrency=max_concurrency,
            max_errors=max_errors,
        )
        err().print(f"task {created.task_id}: {created.executions} execution(s)")
        if not wait:
            typer.echo(created.task_id)
            return
        by_id = {agent.agent_id: agent for agent in known}
        missing = [agent_id for agent_id in created.agent_ids if agent_id not in by_id]
        summaries = [by_id[a] for a in created.agent_ids if a in by_id] + _agents_named(client, missing)
        warn_offline(summaries, delivery_timeout or DEFAULT_DELIVERY_TIMEOUT_S)
        live = out().is_terminal and not json_out
        try:
            task = _follow(client, created.task_id, poll, deadline, live=live)
        except WaitTimedOut as timed_out:
            unfinished = [e for e in timed_out.task.executions if not e.terminal]
            waiting = ", ".join(f"{e.agent_id} {e.status}" for e in unfinished[:10])
            err().print(
                f"[red]gave up waiting after {wait_timeout}s (--wait-timeout): "
                f"{len(unfinished)} execution(s) "
                f"not finished ({waiting}).[/red] The task goes on: fleetlink tasks show {created.task_id}; "
                f"fleetlink tasks cancel {created.task_id}"
            )
            if json_out:
                print_json(timed_out.task)
            raise typer.Exit(WAIT_TIMEOUT_EXIT) from None
        except KeyboardInterrupt:
            err().print(f"stopped following; the task goes on: fleetlink tasks show {created.task_id}")
            raise typer.Exit(130) from None
    if json_out:
        print_json(task)
    else:
        if not live:
            _print_executions(task)
        _print_outputs(task)
    if not _all_succeeded(task):
        raise typer.Exit(1)


def _task_details(task: TaskDetail) -> dict[str, str]:
    targets = task.targets
    target_text = ", ".join([*targets.agent_ids, *(f"tag:{k}={v}" for k, v in sorted(targets.tags.items()))])
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
        "delivery timeout": duration(task.delivery_timeout_seconds * 1000),
        "max concurrency": str(task.max_concurrency or "-"),
        "max errors": str(task.max_errors or "-"),
        "created": f"{when(task.created_at)} ({ago(task.created_at)})"
        + (f" by {escape(task.created_by)}" if task.created_by else ""),
    }
    if task.finished_at is not None:
        rows["finished"] = when(task.finished_at)
    if task.cancelled_at is not None:
        rows["cancelled"] = when(task.cancelled_at)
    if task.counts:
        rows["executions"] = count_line(task.counts)
    return rows


@tasks_app.command("show")
def show_task(
    task_id: Annotated[str, typer.Argument(help="Task id (tsk_...)")],
    url: UrlOption = None,
    operator_token: OperatorTokenOption = None,
    output: OutputOption = OutputFormat.TABLE,
    as_json: JsonOption = False,
) -> None:
    """Show a task: its details, a row per agent, and every agent's output (-o json: the API's object)."""
    with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
        task = client.get_task(task_id)
    if wants_json(output, as_json):
        print_json(task)
        return
    print_details(_task_details(task))
    _print_executions(task)
    _print_outputs(task)


#: How a listed task is shown: a finished task with failures is ``failed``, not ``finished``.
def task_status(task: TaskSummary) -> str:
    if task.state is TaskState.CANCELLED:
        return styled("cancelled", TASK_STATE_STYLE)
    finished = task.finished_executions
    errors = sum(n for status, n in finished.items() if ExecutionStatus(status).is_error)
    if task.state is TaskState.ACTIVE:
        return "[bold red]active, failing[/bold red]" if errors else styled("active", TASK_STATE_STYLE)
    if errors:
        return "[bold red]failed[/bold red]"
    if finished.get(ExecutionStatus.EXPIRED):
        return "[yellow]expired[/yellow]"
    if not finished:  # finished before counts were kept
        return styled(task.state, TASK_STATE_STYLE)
    return "[green]succeeded[/green]"


def _results(task: TaskSummary) -> str:
    parts = [count_line(task.finished_executions)]
    if task.open_executions:
        parts.append(f"{task.open_executions} open")
    return ", ".join(part for part in parts if part) or str(task.execution_count or "-")


@tasks_app.command("ls")
def list_tasks(
    url: UrlOption = None,
    operator_token: OperatorTokenOption = None,
    state: Annotated[TaskState | None, typer.Option("--state", help="Only tasks in this state")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many tasks")] = 50,
    output: OutputOption = OutputFormat.TABLE,
    as_json: JsonOption = False,
) -> None:
    """List tasks, newest first, with their executions' outcomes (-o json: an array)."""
    with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
        tasks = list(itertools.islice(client.iter_tasks(state=state, page_size=min(limit, 100)), limit))
    if wants_json(output, as_json):
        print_json(tasks)
        return
    if not tasks:
        err().print("no tasks")
        return
    now = now_ms()
    columns = [
        Column("ID"),
        Column("TYPE"),
        Column("COMMAND", max_width=50),
        Column("STATUS"),
        Column("EXECUTIONS", fold=True),
        Column("CREATED"),
    ]
    rows = [
        [
            task.task_id,
            escape(task.type),
            escape(first_line(_what(task), 50)),
            task_status(task),
            _results(task),
            ago(task.created_at, now),
        ]
        for task in tasks
    ]
    print_table(columns, rows)


@tasks_app.command("cancel")
def cancel_task(
    task_id: Annotated[str, typer.Argument(help="Task id (tsk_...)")],
    url: UrlOption = None,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Cancel a task: queued executions end now, running ones are stopped by their agents (idempotent)."""
    with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
        task = client.cancel_task(task_id)
    counts = count_line(task.counts)
    out().print(f"{task.task_id} {styled(task.state, TASK_STATE_STYLE)}" + (f": {counts}" if counts else ""))
    if any(task.counts.get(status) for status in (ExecutionStatus.LEASED, ExecutionStatus.RUNNING)):
        err().print("[dim]running executions stop when their agents next check in[/dim]")
