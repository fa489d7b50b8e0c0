"""Tasks end to end over real HTTP: a dev stack, two agents running `fleetlink agent run`, an operator.

The dev stack here is this module's own, with a 1 s heartbeat interval (the server decides how often
agents check in, so this is what makes them pick work up promptly). Each agent is a separate
identity: its own state dir and machine id, registered with `fleetlink agent register`, then running
`fleetlink agent run` as a subprocess, tagged role=web.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from fleetlink.client.operator import OperatorClient
from fleetlink.contract.tasks import ExecutionSummary, TaskDetail
from tests.e2e.conftest import REPO, DevServer

pytestmark = [pytest.mark.e2e]

OPERATOR_TOKEN = "e2e-tasks-operator-token"
#: Guards against a hung stack; never an assertion about speed.
DEADLINE_S = 90.0
STOP_TIMEOUT_S = 60.0


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
        "NO_COLOR": "1",
        "COLUMNS": "200",
        **extra,
    }


def _fleetlink(
    *args: str, env: dict[str, str], timeout: float = DEADLINE_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetlink.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)  # polling interval, not an assertion


@dataclass
class AgentProcess:
    """One `fleetlink agent run` subprocess and everything it printed."""

    agent_id: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.lines[-80:])

    def stop(self) -> int:
        """Ctrl-C, then the exit code (killed if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        for reader in self.readers:
            reader.join(timeout=STOP_TIMEOUT_S)
        return code


def _read(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


def register_agent(
    server: DevServer, registration_token: str, home: Path, *, name: str | None = None
) -> tuple[str, dict[str, str]]:
    """Register a new machine (own state dir and machine id); returns its agent id and environment."""
    env = _env(
        FLEETLINK_URL=server.url,
        FLEETLINK_STATE_DIR=str(home),
        FLEETLINK_MACHINE_ID=f"e2e-tasks-{uuid.uuid4().hex}",
        FLEETLINK_REGISTRATION_TOKEN=registration_token,
    )
    registered = _fleetlink("agent", "register", *(["--name", name] if name else []), env=env)
    assert registered.returncode == 0, registered.stderr
    return registered.stdout.strip(), env


def register_tagged(
    server: DevServer, operator: OperatorClient, home: Path, tags: dict[str, str], *, name: str | None = None
) -> tuple[str, dict[str, str]]:
    """Register a new machine with a single-use token of ``tags``; its agent id and environment."""
    token = operator.create_token(ttl_seconds=600, max_uses=1, tags=tags).token
    return register_agent(server, token, home, name=name)


def launch_agent(agent_id: str, env: dict[str, str], *options: str) -> AgentProcess:
    """Start `fleetlink agent run OPTIONS` for a registered agent."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetlink.cli", "agent", "run", *options],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    agent = AgentProcess(agent_id, process)
    agent.readers = [threading.Thread(target=_read, args=(process.stdout, agent.lines), daemon=True)]
    for reader in agent.readers:
        reader.start()
    return agent


def start_agent(server: DevServer, registration_token: str, home: Path) -> AgentProcess:
    return launch_agent(*register_agent(server, registration_token, home))


@pytest.fixture(scope="module")
def agents(
    server: DevServer, operator: OperatorClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[AgentProcess]]:
    """Two agents tagged role=web, each running tasks; both must stop cleanly on Ctrl-C."""
    token = operator.create_token(ttl_seconds=600, max_uses=2, tags={"role": "web"}).token
    started = [start_agent(server, token, tmp_path_factory.mktemp(f"agent-{n}")) for n in (1, 2)]
    yield started
    for agent in started:
        code = agent.stop()
        assert code == 0, f"{agent.agent_id} exited {code}:\n{agent.output()}"
        assert "Traceback" not in agent.output(), agent.output()


def run_to_the_end(
    operator: OperatorClient, agents: list[AgentProcess], command: str, timeout_seconds: int = 300
) -> TaskDetail:
    """Send a shell task to role=web and wait until it is finished or cancelled."""
    created = operator.create_task(command=command, tags={"role": "web"}, timeout_seconds=timeout_seconds)
    assert sorted(created.agent_ids) == sorted(a.agent_id for a in agents)
    return wait_done(operator, created.task_id, agents)


def wait_done(operator: OperatorClient, task_id: str, agents: list[AgentProcess]) -> TaskDetail:
    def done() -> bool:
        return operator.get_task(task_id).done

    try:
        eventually(done, f"task {task_id} to end")
    except AssertionError:
        logs = "\n".join(f"--- {a.agent_id}\n{a.output()}" for a in agents)
        raise AssertionError(f"task {task_id} did not end:\n{operator.get_task(task_id)}\n{logs}") from None
    return operator.get_task(task_id)


def by_agent(task: TaskDetail) -> dict[str, ExecutionSummary]:
    return {execution.agent_id: execution for execution in task.executions}


def test_echo_succeeds_on_both_agents(operator: OperatorClient, agents: list[AgentProcess]) -> None:
    # Given two agents tagged role=web / When the operator runs `echo hello` on role=web
    task = run_to_the_end(operator, agents, command="echo hello")
    # Then both succeed, with exit 0 and the output
    assert task.state == "finished"
    executions = by_agent(task)
    assert executions.keys() == {a.agent_id for a in agents}
    for execution in executions.values():
        assert (execution.status, execution.exit_code) == ("succeeded", 0)
        assert execution.output == "hello\n"


def test_a_timeout_ends_both_timed_out(operator: OperatorClient, agents: list[AgentProcess]) -> None:
    # When the operator runs `sleep 5` with a 1 s timeout
    task = run_to_the_end(operator, agents, command="sleep 5", timeout_seconds=1)
    # Then both executions are timed_out
    assert [e.status for e in task.executions] == ["timed_out", "timed_out"]


def test_exit_3_fails_on_both_with_exit_code_3(operator: OperatorClient, agents: list[AgentProcess]) -> None:
    task = run_to_the_end(operator, agents, command="exit 3")
    assert [(e.status, e.exit_code) for e in task.executions] == [("failed", 3), ("failed", 3)]


def test_cancelling_a_running_task_stops_it_on_both(
    operator: OperatorClient, agents: list[AgentProcess]
) -> None:
    # Given `sleep 30` running on both agents
    created = operator.create_task(command="sleep 30", tags={"role": "web"})
    eventually(
        lambda: [e.status for e in operator.get_task(created.task_id).executions] == ["running", "running"],
        "both executions to run",
    )
    # When the operator cancels the task
    operator.cancel_task(created.task_id)
    # Then both agents stop it and both executions end cancelled
    task = wait_done(operator, created.task_id, agents)
    assert task.state == "cancelled"
    assert [e.status for e in task.executions] == ["cancelled", "cancelled"]
    # And each agent says it stopped its execution
    executions = by_agent(task)
    for agent in agents:
        line = f"stopping {executions[agent.agent_id].execution_id}"
        eventually(lambda: line in agent.output(), f"{agent.agent_id} to print {line!r}")  # noqa: B023


def test_the_cli_runs_a_command_on_role_web_and_exits_0(
    server: DevServer, agents: list[AgentProcess]
) -> None:
    # When the operator runs `fleetlink tasks run --target tag:role=web -- echo hi`
    env = _env(FLEETLINK_URL=server.url, FLEETLINK_OPERATOR_TOKEN=server.operator_token)
    result = _fleetlink(
        "tasks", "run", "--target", "tag:role=web", "--poll", "0.2", "--", "echo", "hi", env=env
    )
    # Then it exits 0, showing both agents succeeded and their output
    assert result.returncode == 0, result.stdout + result.stderr
    for agent in agents:
        (row,) = [line for line in result.stdout.splitlines() if agent.agent_id in line.split()]
        assert "succeeded" in row
    assert result.stdout.count("\nhi\n") == 2


def test_the_cli_exits_1_when_an_agent_fails(server: DevServer, agents: list[AgentProcess]) -> None:
    env = _env(FLEETLINK_URL=server.url, FLEETLINK_OPERATOR_TOKEN=server.operator_token)
    result = _fleetlink("tasks", "run", "-t", "tag:role=web", "--poll", "0.2", "--", "exit 3", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    for agent in agents:
        (row,) = [line for line in result.stdout.splitlines() if agent.agent_id in line.split()]
        assert "failed" in row


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False
