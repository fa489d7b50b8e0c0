"""Task output end to end: a dev stack, a real `fleetlink agent run`, the operator's CLI.

Live output arrives while the command runs (`tasks logs -f`), stdout and stderr stay apart, a long
output keeps its end inline, and a retried execution keeps both attempts.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetlink.client.operator import OperatorClient
from tests.e2e.conftest import REPO, DevProcess, DevServer, start_dev_process
from tests.e2e.test_tasks_e2e import AgentProcess, _env, _fleetlink, launch_agent, register_agent, wait_done

pytestmark = [pytest.mark.e2e]

OPERATOR_TOKEN = "e2e-output-operator-token"
DEADLINE_S = 90.0
FIVE_LINES = "for i in $(seq 1 5); do echo out$i; echo err$i >&2; sleep 1; done"


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEETLINK_HEARTBEAT_INTERVAL_S", "1")
        dev: DevProcess = start_dev_process(OPERATOR_TOKEN)
    yield DevServer(dev.url, OPERATOR_TOKEN)
    assert dev.interrupt() == 0, dev.output()


@pytest.fixture(scope="module")
def operator(server: DevServer) -> Iterator[OperatorClient]:
    with OperatorClient(server.url, server.operator_token) as client:
        yield client


@pytest.fixture(scope="module")
def agent(
    server: DevServer, operator: OperatorClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    token = operator.create_token(ttl_seconds=600, max_uses=1, tags={"role": "out"}).token
    started = launch_agent(*register_agent(server, token, tmp_path_factory.mktemp("out-agent"), name="out-1"))
    yield started
    assert started.stop() == 0, started.output()
    assert "Traceback" not in started.output(), started.output()


def operator_env(server: DevServer) -> dict[str, str]:
    return _env(FLEETLINK_URL=server.url, FLEETLINK_OPERATOR_TOKEN=server.operator_token)


class Timed:
    """A CLI subprocess whose stdout and stderr lines are kept with the wall-clock ms they arrived."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fleetlink.cli", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[tuple[int, str]] = []
        self.stderr: list[tuple[int, str]] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream: object, into: list[tuple[int, str]]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append((time.time_ns() // 1_000_000, line.rstrip("\n")))

    def wait(self) -> int:
        code = self.process.wait(timeout=DEADLINE_S)
        for reader in self.readers:
            reader.join(timeout=DEADLINE_S)
        return code


def test_logs_follow_shows_lines_while_the_command_runs_streams_apart(
    server: DevServer, operator: OperatorClient, agent: AgentProcess
) -> None:
    # Given a command printing a line to each stream every second for five seconds
    created = operator.create_task(command=FIVE_LINES, agent_ids=[agent.agent_id], timeout_seconds=60)
    # When an operator follows its output
    logs = Timed(["tasks", "logs", created.task_id, "-f"], operator_env(server))
    assert logs.wait() == 0, logs.stderr
    task = wait_done(operator, created.task_id, [agent])
    (execution,) = task.executions
    # Then out1 was shown before the execution finished
    assert execution.finished_at is not None
    first_at = next(at for at, line in logs.stdout if line == "out1")
    assert first_at < execution.finished_at
    # and stdout and stderr came apart, every line once, in order
    assert [line for _, line in logs.stdout] == [f"out{i}" for i in range(1, 6)]
    assert [line for _, line in logs.stderr] == [f"err{i}" for i in range(1, 6)]
    # and --stream picks one afterwards
    only_err = _fleetlink("tasks", "logs", created.task_id, "--stream", "stderr", env=operator_env(server))
    assert (only_err.stdout, only_err.stderr.split()) == ("", [f"err{i}" for i in range(1, 6)])
    # and the result keeps them apart too
    attempts = operator.execution_attempts(execution.execution_id).attempts
    assert (attempts[-1].output, attempts[-1].stderr) == (
        "".join(f"out{i}\n" for i in range(1, 6)),
        "".join(f"err{i}\n" for i in range(1, 6)),
    )


def test_a_long_output_keeps_its_last_line_inline(operator: OperatorClient, agent: AgentProcess) -> None:
    # Given a command printing 5 MiB and then a last line
    command = "head -c 5242880 /dev/zero | tr '\\0' x; echo; echo LAST-LINE"
    created = operator.create_task(command=command, agent_ids=[agent.agent_id], timeout_seconds=60)
    (execution,) = wait_done(operator, created.task_id, [agent]).executions
    # Then the inline copy has its start and its end, and the true size
    assert execution.output is not None
    assert execution.output.startswith("x" * 100)
    assert execution.output.endswith("LAST-LINE\n")
    assert (execution.output_truncated, execution.output_bytes) == (True, 5 * 1024 * 1024 + 11)


def test_a_retried_execution_shows_both_attempts(
    server: DevServer, operator: OperatorClient, agent: AgentProcess, tmp_path: Path
) -> None:
    # Given a command that fails the first time and succeeds the second
    marker = tmp_path / "ran-once"
    first = f"touch {marker}; echo first; echo oops >&2; exit 3"
    command = f"if [ -e {marker} ]; then echo second; else {first}; fi"
    created = operator.create_task(
        command=command, agent_ids=[agent.agent_id], timeout_seconds=60, max_retries=1
    )
    (execution,) = wait_done(operator, created.task_id, [agent]).executions
    assert (execution.status, execution.attempt) == ("succeeded", 2)
    # When the operator shows the task with its attempts
    shown = _fleetlink("tasks", "show", created.task_id, "--attempts", env=operator_env(server))
    # Then both attempts are there with their outcomes and outputs
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout[shown.stdout.index("attempt 1: failed, exit 3") :]
    assert "attempt 2: succeeded, exit 0" in text
    assert text.index("first") < text.index("oops") < text.index("attempt 2") < text.index("second")


def test_logs_of_a_quick_command_come_from_its_result(
    server: DevServer, operator: OperatorClient, agent: AgentProcess
) -> None:
    # Given a command that ends within a second (it sends no chunk)
    created = operator.create_task(command="echo quick; echo fast >&2", agent_ids=[agent.agent_id])
    wait_done(operator, created.task_id, [agent])
    # When an operator asks for its logs
    logs = _fleetlink("tasks", "logs", created.task_id, env=operator_env(server))
    # Then its output is shown all the same, each stream where it belongs
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "quick\n", "fast\n")
