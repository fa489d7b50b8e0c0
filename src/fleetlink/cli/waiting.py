"""How ``tasks run`` waits: each agent's result (and output) printed as it finishes, offline targets
named at once on a line of their own and never waited for, a short default wait after which the
agents that did not answer are listed with the commands that follow up, and an exit status that
says what happened (:class:`RunExit`)."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from rich.console import Console
from rich.text import Text

from fleetlink.cli.params import format_seconds
from fleetlink.cli.render import EXECUTION_STYLE, ago, err, escape, out, styled, visible
from fleetlink.contract.agents import AgentSummary
from fleetlink.contract.tasks import ExecutionSummary, TaskDetail
from fleetlink.core.entities import Liveness
from fleetlink.core.tasks.model import ExecutionStatus

#: How long `tasks run` waits by default (seconds; --wait-timeout changes it, 0: until the task ends).
DEFAULT_WAIT_S = 120
#: Targets offline at the start are waited for this long (seconds) before the wait ends without them:
#: an agent that is just starting gets the chance to check in.
OFFLINE_GRACE_S = 5.0
#: Up to this many agents are named in one summary line; the rest are counted ("and 52 more").
NAMED_AT_MOST = 10


class RunExit(IntEnum):
    """The exit status of ``tasks run`` (documented in its help and the README)."""

    SUCCEEDED = 0  # every targeted agent ran it and succeeded
    FAILED = 1  # at least one execution failed, timed out, was cancelled or expired
    USAGE = 2  # the command line was wrong (nothing was sent)
    OFFLINE = 3  # every agent that answered succeeded; offline targets have not answered yet
    NO_TARGETS = 4  # the targets named no agent
    WAIT_TIMEOUT = 124  # the wait ended (--wait-timeout) with agents still running it; the task goes on
    INTERRUPTED = 130  # Ctrl-C: stopped following; the task goes on


@dataclass
class Outcome:
    """How following a task ended."""

    task: TaskDetail
    exit: RunExit
    #: Executions not finished when the wait ended: offline targets, and those still at work.
    offline: list[ExecutionSummary] = field(default_factory=list)
    unfinished: list[ExecutionSummary] = field(default_factory=list)


def name_of(agent_id: str, names: Mapping[str, str]) -> str:
    """``web-01`` (the agent's name), or its id when the name is not known."""
    return names.get(agent_id) or agent_id


def named_list(items: Sequence[str], at_most: int = NAMED_AT_MOST) -> str:
    """``a, b, c`` or ``a, b, … and 52 more``."""
    shown = ", ".join(items[:at_most])
    return shown + (f" and {len(items) - at_most} more" if len(items) > at_most else "")


def warn_offline(agents: Sequence[AgentSummary], delivery_timeout_s: int) -> set[str]:
    """A short line per target that is not online (at most :data:`NAMED_AT_MOST`, then a count); the
    ids of those agents, which the wait does not hold for."""
    away = [agent for agent in agents if agent.liveness is not Liveness.ONLINE]
    console = err()
    for agent in away[:NAMED_AT_MOST]:
        console.print(
            f"[yellow]{escape(agent.name)} ({agent.agent_id}): "
            + (
                "never seen"
                if agent.last_seen_at is None
                else f"{agent.liveness.value}, last seen {ago(agent.last_seen_at)}"
            )
            + "[/yellow]"
        )
    if len(away) > NAMED_AT_MOST:
        console.print(f"[yellow]and {len(away) - NAMED_AT_MOST} more not online[/yellow]")
    if away:
        console.print(
            f"[yellow]{len(away)} of {len(agents)} targets not online: not waited for; their executions "
            f"stay queued up to {format_seconds(delivery_timeout_s)} (--delivery-timeout)[/yellow]"
        )
    return {agent.agent_id for agent in away}


def print_result(console: Console, execution: ExecutionSummary, names: Mapping[str, str]) -> None:
    """One agent's outcome under a heading naming it, then its output in full (as the server kept it)."""
    outcome = execution.status + ("" if execution.exit_code is None else f", exit {execution.exit_code}")
    style = EXECUTION_STYLE.get(execution.status, "default")
    who = name_of(execution.agent_id, names)
    label = who if who == execution.agent_id else f"{who} ({execution.agent_id})"
    title = f"{escape(label)} [{style}]{escape(outcome)}[/]"
    if console.is_terminal:
        console.rule(title, align="left")
    else:
        console.out(f"== {Text.from_markup(title).plain}", highlight=False)
    if execution.output:
        console.out(visible(execution.output.rstrip("\n"), block=True), highlight=False)
    if execution.output_truncated:
        total = f" of {execution.output_bytes} bytes" if execution.output_bytes is not None else ""
        console.print(f"[dim](output truncated: the start{total} is kept)[/dim]")
    if execution.error:
        console.print(f"[red]error:[/red] {escape(execution.error)}")


def _clock() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S")


def follow(
    fetch: Callable[[], TaskDetail],
    *,
    names: Mapping[str, str],
    offline: set[str],
    poll_s: float,
    wait_s: int,
    on_change: Callable[[TaskDetail], None] | None = None,
    console: Console | None = None,
    show_results: bool = True,
) -> Outcome:
    """Poll the task; print each execution's result once it ends (``show_results``) and a line per
    change of status on stderr; stop when the task is done, when only offline targets' queued
    executions are left, or after ``wait_s`` seconds (0: no limit)."""
    console = console or out()
    started = time.monotonic()
    deadline = None if wait_s <= 0 else started + wait_s
    grace_ends = started + OFFLINE_GRACE_S
    seen: dict[str, str] = {}
    shown: set[str] = set()
    task = fetch()
    while True:
        for execution in sorted(task.executions, key=lambda e: name_of(e.agent_id, names)):
            if seen.get(execution.execution_id) != execution.status and on_change is None:
                err().print(
                    f"[dim]{_clock()}[/dim] {escape(name_of(execution.agent_id, names))} "
                    f"{styled(execution.status, EXECUTION_STYLE)}"
                )
            seen[execution.execution_id] = execution.status
            if execution.terminal and execution.execution_id not in shown:
                shown.add(execution.execution_id)
                if show_results:
                    print_result(console, execution, names)
        if on_change is not None:
            on_change(task)
        outcome = _ended(task, offline, deadline, grace_over=time.monotonic() >= grace_ends)
        if outcome is not None:
            return outcome
        time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))
        task = fetch()


def _ended(
    task: TaskDetail, offline: set[str], deadline: float | None, *, grace_over: bool
) -> Outcome | None:
    """How the wait ends now, or None to go on: when the task is done; once the grace is over, when only
    offline targets' queued executions are left; at the deadline."""
    open_ = [e for e in task.executions if not e.terminal]
    waiting_offline = [e for e in open_ if e.agent_id in offline and e.status is ExecutionStatus.QUEUED]
    working = [e for e in open_ if e not in waiting_offline]
    failed = any(e.terminal and e.status is not ExecutionStatus.SUCCEEDED for e in task.executions)
    if task.done or not open_:
        return Outcome(task, RunExit.FAILED if failed or not task.executions else RunExit.SUCCEEDED)
    timed_out = deadline is not None and time.monotonic() >= deadline
    if not working and (grace_over or timed_out):
        return Outcome(task, RunExit.FAILED if failed else RunExit.OFFLINE, waiting_offline, [])
    if timed_out:
        return Outcome(task, RunExit.WAIT_TIMEOUT, waiting_offline, working)
    return None


def say_who_did_not_answer(outcome: Outcome, names: Mapping[str, str], waited: str) -> None:
    """After the wait: who did not answer (named, then counted) and the commands that follow up."""
    task_id = outcome.task.task_id
    console = err()
    if outcome.unfinished:
        who = named_list([f"{name_of(e.agent_id, names)} {e.status}" for e in outcome.unfinished])
        console.print(
            f"[red]stopped waiting after {waited} (--wait-timeout): {len(outcome.unfinished)} not finished: "
            f"{escape(who)}[/red]"
        )
    if outcome.offline:
        who = named_list([name_of(e.agent_id, names) for e in outcome.offline])
        console.print(f"[yellow]{len(outcome.offline)} offline, not answered: {escape(who)}[/yellow]")
    console.print(
        f"The task goes on. Follow up: fleetlink tasks show {task_id}; "
        f"fleetlink tasks wait {task_id}; fleetlink tasks cancel {task_id}"
    )
