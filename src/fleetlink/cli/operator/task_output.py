"""Output of tasks on the command line: follow live output (``tasks logs``), every attempt
(``tasks show --attempts``, ``tasks attempts``), and the lines ``tasks run`` prints as they come.

stdout lines of a command go to stdout, its stderr lines to stderr (so ``> file`` keeps them
apart); with more than one agent each line starts with the agent's name, as ``salt`` and
``parallel --tag`` do.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from enum import StrEnum
from typing import Annotated

import typer

from fleetlink.cli.operator.command import OperatorCall
from fleetlink.cli.render import EXECUTION_STYLE, duration, escape, out, section, visible
from fleetlink.client.operator import OperatorClient
from fleetlink.contract.tasks import ExecutionSummary, TaskDetail
from fleetlink.core.tasks.model import ExecutionStatus
from fleetlink.core.tasks.output import Attempt, AttemptList

#: How often a follower asks for new output (the agent sends at most a chunk a second).
FOLLOW_POLL_S = 0.5
#: Up to this many agents' names are looked up one by one; more are shown by id.
_NAMES_ONE_BY_ONE = 20


class StreamChoice(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


TaskIdArgument = Annotated[str, typer.Argument(help="Task id (tsk_...)")]
ExecutionIdArgument = Annotated[str, typer.Argument(help="Execution id (exe_...)")]

#: Prints one line of one stream.
LinePrinter = Callable[[str, str], None]


def print_line(stream: str, line: str) -> None:
    target = sys.stdout if stream == "stdout" else sys.stderr
    target.write(visible(line, block=True) + "\n")
    target.flush()


@dataclass
class _Cursor:
    attempt: int = 1
    after: int = 0
    finished: bool = False
    partial: dict[str, str] = field(default_factory=dict)


@dataclass
class OutputFollower:
    """Reads new output of a task's executions from their cursors and prints it line by line."""

    client: OperatorClient
    names: dict[str, str]
    _: KW_ONLY
    stream: StreamChoice | None = None
    prefix: bool = True
    printer: LinePrinter = print_line
    #: Show an attempt that sent no chunk from its result (``tasks run`` prints results itself).
    results: bool = True
    _cursors: dict[str, _Cursor] = field(default_factory=dict, init=False)

    def poll(self, executions: list[ExecutionSummary]) -> None:
        """Print what is new for each execution that ran (one request per running execution)."""
        for execution in executions:
            cursor = self._cursors.setdefault(execution.execution_id, _Cursor())
            if execution.status is ExecutionStatus.QUEUED and execution.attempt == cursor.attempt:
                continue
            if cursor.finished or execution.status in (ExecutionStatus.EXPIRED,):
                continue
            self._read(execution, cursor)

    def _read(self, execution: ExecutionSummary, cursor: _Cursor) -> None:
        while True:
            page = self.client.execution_output(
                execution.execution_id, after=cursor.after, attempt=cursor.attempt
            )
            for chunk in page.chunks:
                for part in chunk.parts:
                    self._take(execution.agent_id, cursor, part.stream, part.data)
            cursor.after = page.next_after
            if not page.done:
                if page.chunks:
                    continue  # a full page: read on
                return
            self._flush(execution.agent_id, cursor)
            if (
                cursor.after == 0 and self.results
            ):  # ended before its first chunk: its result holds its output
                self._show_result(execution, cursor.attempt)
            if execution.attempt > cursor.attempt:  # a retry runs: follow it from its start
                cursor.attempt, cursor.after = cursor.attempt + 1, 0
                continue
            cursor.finished = execution.status.terminal
            return

    def _show_result(self, execution: ExecutionSummary, attempt: int) -> None:
        for ended in self.client.execution_attempts(execution.execution_id).attempts:
            if ended.attempt == attempt:
                for stream, text in (("stdout", ended.output), ("stderr", ended.stderr)):
                    for line in (text or "").splitlines():
                        self._show(execution.agent_id, stream, line)

    def _take(self, agent_id: str, cursor: _Cursor, stream: str, data: str) -> None:
        text = cursor.partial.get(stream, "") + data
        *lines, cursor.partial[stream] = text.split("\n")
        for line in lines:
            self._show(agent_id, stream, line)

    def _flush(self, agent_id: str, cursor: _Cursor) -> None:
        for stream, rest in cursor.partial.items():
            if rest:
                self._show(agent_id, stream, rest)
        cursor.partial.clear()

    def _show(self, agent_id: str, stream: str, line: str) -> None:
        if self.stream is not None and stream != self.stream:
            return
        lead = f"{self.names.get(agent_id, agent_id)}: " if self.prefix else ""
        self.printer(stream, lead + line)

    @property
    def drained(self) -> bool:
        return all(cursor.finished for cursor in self._cursors.values())


def agent_names(client: OperatorClient, agent_ids: list[str]) -> dict[str, str]:
    """Agent id → name, for the few agents a command shows (many: their ids)."""
    if len(agent_ids) > _NAMES_ONE_BY_ONE:
        return {}
    return {agent_id: client.get_agent(agent_id).name for agent_id in agent_ids}


def _chosen(task: TaskDetail, names: dict[str, str], agent: str | None) -> list[ExecutionSummary]:
    if agent is None:
        return list(task.executions)
    chosen = [e for e in task.executions if agent in (e.agent_id, names.get(e.agent_id))]
    if not chosen:
        raise typer.BadParameter(f"no execution of {task.task_id} runs on {agent!r}", param_hint="--agent")
    return chosen


def follow_logs(
    client: OperatorClient,
    task_id: str,
    *,
    agent: str | None,
    stream: StreamChoice | None,
    follow: bool,
    poll_s: float = FOLLOW_POLL_S,
    printer: LinePrinter = print_line,
) -> TaskDetail:
    """Print the task's output (one agent's or all); ``follow``: until every execution ended."""
    task = client.get_task(task_id)
    names = agent_names(client, sorted({e.agent_id for e in task.executions}))
    chosen = _chosen(task, names, agent)
    follower = OutputFollower(client, names, stream=stream, prefix=len(chosen) > 1, printer=printer)
    while True:
        follower.poll(chosen)
        if not follow or (task.done and follower.drained):
            return task
        time.sleep(poll_s)
        task = client.get_task(task_id)
        chosen = _chosen(task, names, agent)


def print_attempts(client: OperatorClient, task: TaskDetail) -> None:
    """Every attempt of every execution: how it ended, its stdout and its stderr."""
    for execution in sorted(task.executions, key=lambda e: e.agent_id):
        for attempt in client.execution_attempts(execution.execution_id).attempts:
            print_attempt(f"{execution.agent_id} attempt {attempt.attempt}", attempt)


def print_attempt(heading: str, attempt: Attempt) -> None:
    console = out()
    section(f"{heading}: {_outcome(attempt)}")
    for label, text, truncated, total in (
        ("stdout", attempt.output, attempt.output_truncated, attempt.output_bytes),
        ("stderr", attempt.stderr, attempt.stderr_truncated, attempt.stderr_bytes),
    ):
        if text:
            console.print(f"[dim]{label}:[/dim]")
            console.out(text.rstrip("\n"), highlight=False)
        if truncated:
            whole = any(found.stream == label for found in attempt.output_objects or ())
            where = (
                f"; all of it: fleetlink tasks output {attempt.execution_id} --stream {label} "
                f"--attempt {attempt.attempt}"
                if whole
                else ""
            )
            console.print(f"[dim]({label}: the start and end of {total} bytes are kept{escape(where)})[/dim]")
    if attempt.error:
        console.print(f"[red]error:[/red] {escape(attempt.error)}")


def _outcome(attempt: Attempt) -> str:
    style = EXECUTION_STYLE.get(attempt.status, "default")
    text = attempt.status.value + ("" if attempt.exit_code is None else f", exit {attempt.exit_code}")
    if attempt.started_at is not None and attempt.finished_at is not None:
        text += f", {duration(attempt.finished_at - attempt.started_at)}"
    return f"[{style}]{escape(text)}[/]"


def task_logs(
    call: OperatorCall,
    task_id: TaskIdArgument,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only this agent's output (name or agt_ id)")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until the task ends")
    ] = False,
    stream: Annotated[
        StreamChoice | None, typer.Option("--stream", help="Only stdout or only stderr (default: both)")
    ] = None,
) -> None:
    """Print a task's live output, stdout to stdout and stderr to stderr, each line prefixed with
    its agent's name when several agents run it; -f follows it as it comes."""
    with call.session() as client:
        try:
            follow_logs(client, task_id, agent=agent, stream=stream, follow=follow)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def execution_attempts(call: OperatorCall, execution_id: ExecutionIdArgument) -> None:
    """Every attempt of one execution: status, exit code, times, stdout and stderr."""
    call.answer(lambda client: client.execution_attempts(execution_id), _print_attempts)


def _print_attempts(listed: AttemptList) -> None:
    for attempt in listed.attempts:
        print_attempt(f"attempt {attempt.attempt}", attempt)
