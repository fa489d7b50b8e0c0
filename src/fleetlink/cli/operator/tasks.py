"""``fleetlink tasks``: run commands on agents, follow them, list and cancel tasks (targets:
``cli/operator/targets.py``; the progress table: ``cli/operator/live.py``; the wait:
``cli/waiting.py``)."""

from __future__ import annotations

import json
import shlex
from functools import partial
from typing import Annotated, Any

import typer
from rich.live import Live

from fleetlink.cli.names import AllMatchingOption
from fleetlink.cli.operator.command import ListCall, OperatorCall, list_command, operator_command
from fleetlink.cli.operator.live import _live_view, _print_executions, _print_outputs, _what
from fleetlink.cli.operator.targets import (
    DEFAULT_DELIVERY_TIMEOUT_S,
    MAX_TARGET_IDS,
    _agents_named,
    _count_targets,
    _names,
    parse_targets,
    resolve_names,
)
from fleetlink.cli.operator.task_download import write_output
from fleetlink.cli.operator.task_output import (
    LinePrinter,
    OutputFollower,
    TaskIdArgument,
    execution_attempts,
    print_attempts,
    print_line,
    task_logs,
)
from fleetlink.cli.params import Share, duration_option, format_seconds, share_option
from fleetlink.cli.render import (
    TASK_STATE_STYLE,
    Column,
    ago,
    count_line,
    err,
    escape,
    first_line,
    now_ms,
    out,
    print_details,
    print_json,
    print_table,
    styled,
    visible,
    when,
)
from fleetlink.cli.waiting import (
    DEFAULT_WAIT_S,
    RunExit,
    follow,
    say_who_did_not_answer,
    warn_offline,
)
from fleetlink.client.operator import OperatorClient
from fleetlink.contract.agents import AgentSummary
from fleetlink.contract.tasks import TaskDetail, TaskSummary
from fleetlink.core.entities import AgentState, Liveness
from fleetlink.core.tasks.model import ExecutionStatus, TaskState

tasks_app = typer.Typer(
    help="Operator: run commands on agents, follow them, list and cancel tasks.", no_args_is_help=True
)


def shell_command(words: list[str]) -> str:
    """The command line to run: one word is taken as shell text as is; several are quoted and joined."""
    return words[0] if len(words) == 1 else shlex.join(words)


EXIT_CODES_HELP = (
    "Exit status: 0 every agent succeeded; 1 an execution failed, timed out, was cancelled or expired; "
    "2 a usage error; 3 all that answered succeeded, offline targets did not answer (not waited "
    "for); 4 the targets named no agent; 124 the wait ended with agents still at work; 130 Ctrl-C. "
    "In the last three the task goes on."
)


@operator_command(
    tasks_app,
    "run",
    context_settings={"allow_interspersed_args": False, "help_option_names": ["--help", "-h"]},
    epilog=EXIT_CODES_HELP,
)
def run_task(
    call: OperatorCall,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- COMMAND", help="The command, after --; one argument is shell text, several are quoted"
        ),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            "-t",
            metavar="TARGET",
            help="An agent id (agt_...), tag:KEY=VALUE, an agent name or glob (web-*), or all; repeat "
            "for more (agents named by id or name, plus those carrying every tag)",
        ),
    ] = None,
    all_matching: AllMatchingOption = False,
    task_type: Annotated[
        str, typer.Option("--type", metavar="TYPE", help="Task type: shell, or one an agent handles")
    ] = "shell",
    timeout: Annotated[
        int,
        duration_option("--timeout", help="Per attempt: 90, 90s, 10m, 2h", low=1, high=86_400, default=300),
    ] = 300,
    priority: Annotated[
        int, typer.Option("--priority", min=-1000, max=1000, metavar="N", help="Higher runs first")
    ] = 0,
    retries: Annotated[
        int, typer.Option("--retries", min=0, max=10, metavar="N", help="Retries after a failure")
    ] = 0,
    max_concurrency: Annotated[
        Share | None,
        share_option(
            "--max-concurrency", help="At most this many agents (or this share of them: 10%) run it at once"
        ),
    ] = None,
    max_errors: Annotated[
        Share | None,
        share_option(
            "--max-errors",
            help="Error budget, a count or a share of the targets (10%): once this many executions failed, "
            "the queued rest are cancelled (by the server, whether or not this command still watches)",
        ),
    ] = None,
    delivery_timeout: Annotated[
        int | None,
        duration_option(
            "--delivery-timeout",
            help="How long an execution waits for an offline agent before it expires (default 1d)",
            low=60,
            high=7 * 86_400,
            show_default=False,
        ),
    ] = None,
    wait_timeout: Annotated[
        int,
        duration_option(
            "--wait-timeout",
            help="Stop waiting after this long (0: until the task ends) and list who did not answer; "
            "the task goes on",
            low=0,
            default=DEFAULT_WAIT_S,
        ),
    ] = DEFAULT_WAIT_S,
    input_json: Annotated[
        str | None, typer.Option("--input", metavar="JSON", help="JSON object: the input of a non-shell task")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Follow the task (default), or just send it and print its id"),
    ] = True,
    poll: Annotated[
        float, typer.Option("--poll", min=0.1, metavar="SECONDS", help="Seconds between progress checks")
    ] = 1.0,
    show_lines: Annotated[
        bool,
        typer.Option("--lines/--no-lines", help="Print output lines as they come, prefixed with the agent"),
    ] = True,
) -> None:
    """Send a task to agents and print each agent's result and output as it finishes.

    Offline targets are named at once and not waited for; after --wait-timeout (2m) it lists who did not
    answer and how to follow up. Examples: fleetlink tasks run --target tag:role=web -- uptime;
    fleetlink tasks run -t 'web-*' --max-concurrency 10% --max-errors 1 -- ./deploy.sh
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
    with call.session() as client:
        known: list[AgentSummary] = []
        if targets.names or targets.everyone:
            active = client.iter_agents(status=AgentState.ACTIVE, page_size=100)
            known = resolve_names(targets, active, all_matching=all_matching)
        agent_ids = list(dict.fromkeys([*targets.agent_ids, *(agent.agent_id for agent in known)]))
        if len(agent_ids) > MAX_TARGET_IDS:
            raise typer.BadParameter(
                f"{len(agent_ids)} agents; a task names at most {MAX_TARGET_IDS}: target a tag instead",
                param_hint="--target",
            )
        shares = [share for share in (max_concurrency, max_errors) if share is not None]
        total = (
            _count_targets(client, agent_ids, targets.tags)
            if any(share.percent is not None for share in shares)
            else 0
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
            max_concurrency=None if max_concurrency is None else max_concurrency.of(total),
            max_errors=None if max_errors is None else max_errors.of(total),
        )
        err().print(f"task {created.task_id}: {created.executions} execution(s)")
        if not wait:
            typer.echo(created.task_id)
            return
        if not created.agent_ids:
            err().print("[red]no agent matched the targets[/red]: fleetlink agents ls shows names and tags")
            raise typer.Exit(RunExit.NO_TARGETS)
        by_id = {agent.agent_id: agent for agent in known}
        missing = [agent_id for agent_id in created.agent_ids if agent_id not in by_id]
        summaries = [by_id[a] for a in created.agent_ids if a in by_id] + _agents_named(client, missing)
        offline = warn_offline(summaries, delivery_timeout or DEFAULT_DELIVERY_TIMEOUT_S)
        names = {agent.agent_id: agent.name for agent in summaries}
        _wait_for(client, created.task_id, names, offline, poll, wait_timeout, call.json, show_lines)


def _wait_for(
    client: OperatorClient,
    task_id: str,
    names: dict[str, str],
    offline: set[str],
    poll: float,
    wait_timeout: int,
    json_out: bool,
    show_lines: bool = False,
) -> None:
    """Follow a task as `tasks run` and `tasks wait` do (``show_lines``: the commands' output lines as
    they come), then exit with the status that says how it went."""
    live = out().is_terminal and not json_out
    lines = None
    if show_lines and not json_out:
        lines = OutputFollower(client, names, printer=_line_printer(live), results=False)

    def fetch() -> TaskDetail:
        task = client.get_task(task_id)
        if lines is not None:
            lines.poll(task.executions)
        return task

    following = partial(follow, fetch, names=names, offline=offline, poll_s=poll, wait_s=wait_timeout)
    try:
        if live:
            task = client.get_task(task_id)
            with Live(_live_view(task, names), console=out(), auto_refresh=False) as view:
                outcome = following(
                    on_change=lambda t: view.update(_live_view(t, names), refresh=True), console=view.console
                )
        else:
            outcome = following(show_results=not json_out)
    except KeyboardInterrupt:
        err().print(f"stopped following; the task goes on: fleetlink tasks show {task_id}")
        raise typer.Exit(RunExit.INTERRUPTED) from None
    if json_out:
        print_json(outcome.task)
    elif not live:
        _print_executions(outcome.task, names)
    if outcome.offline or outcome.unfinished:
        say_who_did_not_answer(outcome, names, format_seconds(wait_timeout))
    if outcome.exit is not RunExit.SUCCEEDED:
        raise typer.Exit(outcome.exit)


@operator_command(tasks_app, "wait", epilog=EXIT_CODES_HELP)
def wait_task(
    call: OperatorCall,
    task_id: Annotated[str, typer.Argument(metavar="TASK", help="Task id (tsk_...)")],
    wait_timeout: Annotated[
        int,
        duration_option(
            "--wait-timeout",
            help="Stop waiting after this long (0: until the task ends)",
            low=0,
            default=DEFAULT_WAIT_S,
        ),
    ] = DEFAULT_WAIT_S,
    poll: Annotated[
        float, typer.Option("--poll", min=0.1, metavar="SECONDS", help="Seconds between progress checks")
    ] = 1.0,
) -> None:
    """Follow a task already sent, as `tasks run` does: results as they come, then who did not answer."""
    with call.session() as client:
        task = client.get_task(task_id)
        agent_ids = [e.agent_id for e in task.executions]
        summaries = _agents_named(client, agent_ids)
        names = {agent.agent_id: agent.name for agent in summaries}
        offline = {agent.agent_id for agent in summaries if agent.liveness is not Liveness.ONLINE}
        _wait_for(client, task_id, names, offline, poll, wait_timeout, call.json)


def _line_printer(live: bool) -> LinePrinter:
    """Lines above the redrawn table on a terminal; else straight to stdout/stderr."""
    if not live:
        return print_line
    return lambda stream, line: out().print(visible(line, block=True), highlight=False, markup=False)


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
        "timeout": format_seconds(task.timeout_seconds),
        "retries": str(task.max_retries),
        "delivery timeout": format_seconds(task.delivery_timeout_seconds),
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


@operator_command(tasks_app, "show")
def show_task(
    call: OperatorCall,
    task_id: TaskIdArgument,
    attempts: Annotated[
        bool, typer.Option("--attempts", help="Every attempt's outcome, stdout and stderr")
    ] = False,
) -> None:
    """Show a task: its details, a row per agent, and every agent's output (-o json: the API's object)."""
    with call.session() as client:
        task = client.get_task(task_id)
        if call.json:
            print_json(task)
            return
        names = _names(client, [e.agent_id for e in task.executions])
        print_details(_task_details(task))
        _print_executions(task, names)
        if attempts:
            print_attempts(client, task)
        else:
            _print_outputs(task, names)


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


@list_command(tasks_app, "ls")
def list_tasks(
    call: ListCall,
    state: Annotated[TaskState | None, typer.Option("--state", help="Only tasks in this state")] = None,
) -> None:
    """List tasks, newest first, with their executions' outcomes (-o json: an array).

    Cut at --limit with a hint naming the command that continues; --all reads every page."""
    with call.session() as client:
        taken = call.take(lambda size, at: client.list_tasks(state=state, limit=size, cursor=at))
    options = ["--state", str(state)] if state else []
    call.show("tasks ls", taken, _print_tasks, options=options, empty="no tasks")


def _print_tasks(tasks: list[TaskSummary]) -> None:
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


@operator_command(tasks_app, "cancel", json_output=False)
def cancel_task(call: OperatorCall, task_id: TaskIdArgument) -> None:
    """Cancel a task: queued executions end now, running ones are stopped by their agents (idempotent)."""
    with call.session() as client:
        task = client.cancel_task(task_id)
    counts = count_line(task.counts)
    out().print(f"{task.task_id} {styled(task.state, TASK_STATE_STYLE)}" + (f": {counts}" if counts else ""))
    if any(task.counts.get(status) for status in (ExecutionStatus.LEASED, ExecutionStatus.RUNNING)):
        err().print("[dim]running executions stop when their agents next check in[/dim]")


operator_command(tasks_app, "logs", json_output=False)(task_logs)
operator_command(tasks_app, "attempts")(execution_attempts)
operator_command(tasks_app, "output", json_output=False)(write_output)
