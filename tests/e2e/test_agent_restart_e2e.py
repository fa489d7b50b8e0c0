"""A daemon SIGKILLed while its command runs: the command goes on under its supervisor, and the
restarted daemon reports what really happened (never a second run of a command that succeeded)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from fleetlink.agent.tasks.service import RESTARTED
from fleetlink.agent.tasks.store import AgentStore
from fleetlink.agent.tasks.supervisor import RUNS_DIR, STARTED
from fleetlink.client.operator import OperatorClient
from tests.e2e.conftest import DevServer
from tests.e2e.test_tasks_e2e import eventually, launch_agent, register_tagged, wait_done

pytestmark = [pytest.mark.e2e]

OPERATOR_TOKEN = "e2e-restart-operator-token"


def started_file(state_dir: Path) -> dict[str, int]:
    (run,) = (state_dir / RUNS_DIR).iterdir()
    found: dict[str, int] = json.loads((run / STARTED).read_text())
    return found


def test_a_daemon_killed_while_its_command_runs_to_success_reports_it_succeeded_once(
    server: DevServer, operator: OperatorClient, tmp_path: Path
) -> None:
    # Given an agent running a command that notes each run, then works for a few seconds
    state_dir = tmp_path / "agent"
    agent_id, env = register_tagged(server, operator, state_dir, {"role": "restart"})
    runs = tmp_path / "runs.log"
    command = f"echo run >> {runs}; sleep 4; echo the-end; echo warned >&2"
    first = launch_agent(agent_id, env)
    created = operator.create_task(command=command, agent_ids=[agent_id], max_retries=2)
    try:
        eventually(lambda: runs.exists(), "the command to start")
        # When the daemon is SIGKILLed while the command runs
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
    finally:
        first.process.kill()
    command_pid = started_file(state_dir)["command"]
    eventually(lambda: group_gone(command_pid), "the command to end on its own")
    # And it starts again
    second = launch_agent(agent_id, env)
    try:
        task = wait_done(operator, created.task_id, [second])
        # Then the execution succeeded with the command's output, after a single run
        (execution,) = task.executions
        assert (execution.status, execution.exit_code) == ("succeeded", 0), execution
        detail = operator.get_task(created.task_id).executions[0]
        assert "the-end" in (detail.output or "")
        # stderr is kept apart from stdout (the execution's attempts carry it)
        (attempt,) = operator.execution_attempts(execution.execution_id).attempts
        assert "warned" in (attempt.stderr or "")
        assert runs.read_text() == "run\n"
    finally:
        assert second.stop() == 0, second.output()


def test_a_command_that_died_with_its_node_is_reported_as_such(
    server: DevServer, operator: OperatorClient, tmp_path: Path
) -> None:
    # Given an agent running a long command under its supervisor
    state_dir = tmp_path / "agent"
    agent_id, env = register_tagged(server, operator, state_dir, {"role": "lost"})
    first = launch_agent(agent_id, env)
    created = operator.create_task(command="sleep 60", agent_ids=[agent_id])
    try:
        eventually(
            lambda: [e.status for e in operator.get_task(created.task_id).executions] == ["running"],
            "the execution to run",
        )
        # When the node goes down: the daemon, the supervisor and the command all die at once
        started = started_file(state_dir)
        first.process.send_signal(signal.SIGKILL)
        os.killpg(started["command"], signal.SIGKILL)
        os.killpg(started["supervisor"], signal.SIGKILL)
        first.process.wait(timeout=30)
        eventually(lambda: group_gone(started["supervisor"]), "the supervisor to be gone")
    finally:
        first.process.kill()
    # And the daemon starts again
    second = launch_agent(agent_id, env)
    try:
        task = wait_done(operator, created.task_id, [second])
        # Then (no outcome recorded, no supervisor) the execution is reported lost with the node
        (execution,) = task.executions
        assert (execution.status, execution.error) == ("failed", RESTARTED)
        with AgentStore.in_state_dir(state_dir) as store:
            assert store.in_flight() == []
    finally:
        assert second.stop() == 0, second.output()


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False
