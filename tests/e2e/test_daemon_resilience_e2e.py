"""A whole daemon under trouble, against one real dev stack: a state dir that fills up, and a
SIGKILL while a typed task's handler runs.

Full disk: a real `fleetlink agent run`, its state dir on a small tmpfs (skipped where mounting is
not allowed). The disk is filled while the daemon runs; the server must keep receiving its
heartbeats (each one's sequence above the last, or the server refuses it), the condition must show
in the heartbeat metrics and in `fleetlink agent status`, a local write must fail with one line, a
task sent meanwhile must not be lost, and once space returns everything must resume without anyone
restarting anything.

SIGKILL: a handler named with ``--handler`` runs in a process of its own under the execution's
supervisor, so it runs on while the daemon is down, and the restarted daemon reports its result.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetlink.agent.tasks.supervisor import OUTCOME, RUNS_DIR, STARTED
from fleetlink.client.operator import OperatorClient
from tests.e2e.conftest import DevServer
from tests.e2e.test_tasks_e2e import _fleetlink, launch_agent, register_tagged, wait_done
from tests.e2e.test_tasks_e2e import eventually as waited
from tests.small_disk import fill, small_tmpfs

pytestmark = [pytest.mark.e2e]

OPERATOR_TOKEN = "e2e-full-disk-operator-token"
NO_SPACE = "No space left on device"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: room for an agent's state dir, little more."""
    with small_tmpfs(tmp_path, "8m") as mount_point:
        yield mount_point


def test_a_daemon_whose_state_dir_fills_up_keeps_beating_reports_it_and_recovers_by_itself(
    server: DevServer, operator: OperatorClient, small_disk: Path
) -> None:
    # Given a running agent whose state dir is on a small disk
    state_dir = small_disk / "agent"
    agent_id, env = register_tagged(server, operator, state_dir, {"role": "full-disk"})
    daemon = launch_agent(agent_id, {**env, "FLEETLINK_FIRST_HEARTBEAT_JITTER_S": "0"})

    def eventually(check: Callable[[], bool], what: str) -> None:
        try:
            waited(check, what)
        except AssertionError as failed:
            raise AssertionError(f"{failed}; the daemon said:\n{daemon.output()}") from None

    def writable() -> float | None:
        return operator.get_agent(agent_id).metrics.get("state_dir_writable")

    def last_seen() -> int:
        return operator.get_agent(agent_id).last_seen_at or 0

    def seen_after(seen: int) -> bool:
        return last_seen() > seen

    def beats(count: int) -> None:
        """Wait until the server has taken ``count`` more heartbeats (each one's sequence above the
        last: the server refuses any other)."""
        for _ in range(count):
            seen = last_seen()
            eventually(functools.partial(seen_after, seen), "a heartbeat")

    try:
        eventually(lambda: writable() == 1.0, "the first heartbeat")
        # When the disk fills up
        filler = fill(small_disk)
        # Then the heartbeats say so, and the server keeps taking them
        eventually(lambda: writable() == 0.0, "a heartbeat reporting the full disk")
        beats(2)
        assert operator.get_agent(agent_id).liveness.value == "online"
        # And `agent status` names the condition
        status = _fleetlink("agent", "status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        said = json.loads(status.stdout)
        assert (said["state_dir_writable"], said["state_dir_problem"]) == (False, NO_SPACE)
        # And a local write fails with one clear line
        put = records_put(env, '"' + "x" * 60_000 + '"')
        assert put.returncode == 1
        assert "Traceback" not in put.stderr
        assert len(put.stderr.strip().splitlines()) == 1, put.stderr
        assert "free space there" in " ".join(put.stderr.split())
        # When a task is sent while the disk is still full, and the agent claims it
        created = operator.create_task(command="echo after-the-storm", agent_ids=[agent_id])

        def execution_status() -> str:
            return operator.get_task(created.task_id).executions[0].status.value

        eventually(lambda: execution_status() == "leased", "the agent to claim the task")
        # Then it is not run on a disk that cannot record it, and not lost either: it stays leased
        # to the agent (handed back to its next claims), and nothing starts
        eventually(
            lambda: daemon.output().count("cannot record the claim") >= 2, "a claim handed back, unrecorded"
        )
        assert execution_status() == "leased"
        assert " started " not in daemon.output()
        # When space returns
        os.unlink(filler)
        # Then the daemon says so by itself, and the task sent meanwhile runs, once
        eventually(lambda: writable() == 1.0, "a heartbeat reporting space again")
        task = wait_done(operator, created.task_id, [daemon])
        (execution,) = task.executions
        assert (execution.status.value, execution.exit_code, execution.attempt) == ("succeeded", 0, 1)
        assert "after-the-storm" in (operator.get_task(created.task_id).executions[0].output or "")
        status = _fleetlink("agent", "status", "--json", env=env)
        assert json.loads(status.stdout)["state_dir_writable"] is True
        assert records_put(env, "2").returncode == 0
        # And the daemon never stopped
        assert daemon.process.poll() is None, daemon.output()
    finally:
        code = daemon.stop()
    assert code == 0, daemon.output()
    said = daemon.output()
    assert "Traceback" not in said, said
    assert said.count(f"{state_dir} takes no writes: {NO_SPACE}") == 1, said
    assert said.count(f"{state_dir} takes writes again") == 1, said


def records_put(env: dict[str, str], value: str) -> subprocess.CompletedProcess[str]:
    """`fleetlink records put inv disk -` with ``value`` on stdin, in the agent's state dir."""
    return subprocess.run(
        [sys.executable, "-m", "fleetlink.cli", "records", "put", "inv", "disk", "-"],
        input=value,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


SLOW_HANDLER = """
import os, time

def nap(task_input):
    with open(task_input["runs"], "a") as runs:
        runs.write("run\\n")
    time.sleep(float(task_input["seconds"]))
    return {"slept": task_input["seconds"], "pid": os.getpid()}
"""


def test_a_daemon_killed_while_a_handler_runs_reports_the_handlers_result_once(
    server: DevServer, operator: OperatorClient, tmp_path: Path
) -> None:
    # Given an agent running a typed task whose handler (named on the command line) takes a while
    state_dir = tmp_path / "agent"
    agent_id, env = register_tagged(server, operator, state_dir, {"role": "handler-kill"})
    handler_file = tmp_path / "slow_handler.py"
    handler_file.write_text(SLOW_HANDLER)
    handler = ("--handler", f"nap={handler_file}:nap")
    runs = tmp_path / "runs.log"
    first = launch_agent(agent_id, env, *handler)
    created = operator.create_task(
        type="nap", input={"runs": str(runs), "seconds": 4}, agent_ids=[agent_id], max_retries=2
    )
    try:
        waited(runs.exists, "the handler to start")
        # When the daemon is SIGKILLed while the handler runs
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
    finally:
        first.process.kill()
    (run,) = (state_dir / RUNS_DIR).iterdir()
    handler_pid = json.loads((run / STARTED).read_text())["command"]
    # Then the handler runs on to its end without the daemon
    waited(lambda: (run / OUTCOME).exists(), "the handler to end on its own")
    # And the restarted daemon (same handlers) reports its result: succeeded, after a single run
    second = launch_agent(agent_id, env, *handler)
    try:
        task = wait_done(operator, created.task_id, [second])
        (execution,) = task.executions
        assert (execution.status.value, execution.attempt) == ("succeeded", 1), execution
        output = json.loads(operator.get_task(created.task_id).executions[0].output or "{}")
        assert output == {"slept": 4, "pid": handler_pid}
        assert runs.read_text() == "run\n"
    finally:
        assert second.stop() == 0, second.output()
