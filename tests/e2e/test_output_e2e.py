"""Task output end to end: a dev stack, a real `fleetlink agent run`, the operator's CLI.

Live output arrives while the command runs (`tasks logs -f`), stdout and stderr stay apart, a long
output keeps its end inline, and a retried execution keeps both attempts.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetlink.client.operator import OperatorClient
from tests.e2e.conftest import REPO, DevServer
from tests.e2e.test_tasks_e2e import (
    AgentProcess,
    _env,
    _fleetlink,
    eventually,
    launch_agent,
    register_tagged,
    wait_done,
)

pytestmark = [pytest.mark.e2e]

OPERATOR_TOKEN = "e2e-output-operator-token"
DEADLINE_S = 90.0
FIVE_LINES = "for i in $(seq 1 5); do echo out$i; echo err$i >&2; sleep 1; done"


@pytest.fixture(scope="module")
def agent(
    server: DevServer, operator: OperatorClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    home = tmp_path_factory.mktemp("out-agent")
    started = launch_agent(*register_tagged(server, operator, home, {"role": "out"}, name="out-1"))
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


def download(server: DevServer, execution_id: str, *options: str) -> bytes:
    """``tasks output`` as an operator runs it (``> file``): waits out the upload after the result."""
    found: list[bytes] = []

    def downloaded() -> bool:
        run = subprocess.run(
            [sys.executable, "-m", "fleetlink.cli", "tasks", "output", execution_id, *options],
            cwd=REPO,
            env=operator_env(server),
            capture_output=True,
            timeout=DEADLINE_S,
        )
        if run.returncode == 0:
            found.append(run.stdout)
            return True
        assert b"not uploaded yet" in run.stderr, run.stderr  # the only refusal worth waiting out
        return False

    eventually(downloaded, f"the complete output of {execution_id}")
    return found[0]


def test_a_long_output_is_downloaded_whole_and_keeps_its_last_line_inline(
    server: DevServer, operator: OperatorClient, agent: AgentProcess
) -> None:
    # Given a command printing 5 MiB and then a last line, and 100 KiB on stderr
    command = (
        "head -c 5242880 /dev/zero | tr '\\0' x; echo; echo LAST-LINE; "
        "head -c 102400 /dev/zero | tr '\\0' e >&2"
    )
    created = operator.create_task(command=command, agent_ids=[agent.agent_id], timeout_seconds=60)
    (execution,) = wait_done(operator, created.task_id, [agent]).executions
    # Then the inline copy has its start and its end, and the true size
    assert execution.output is not None
    assert execution.output.startswith("x" * 100)
    assert execution.output.endswith("LAST-LINE\n")
    assert (execution.output_truncated, execution.output_bytes) == (True, 5 * 1024 * 1024 + 11)
    # When the operator downloads the complete output, each stream apart
    stdout = download(server, execution.execution_id)
    stderr = download(server, execution.execution_id, "--stream", "stderr")
    # Then both are byte-identical to what the command printed
    expected = b"x" * 5 * 1024 * 1024 + b"\nLAST-LINE\n"
    assert hashlib.sha256(stdout).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert stderr == b"e" * 102400
    # and the attempt records both objects: sizes and SHA-256 of what the bucket holds
    (attempt,) = operator.execution_attempts(execution.execution_id).attempts
    assert {o.stream: o.bytes for o in attempt.output_objects or []} == {
        "stdout": len(expected),
        "stderr": 102400,
    }


def test_a_retried_execution_shows_both_attempts(
    server: DevServer, operator: OperatorClient, agent: AgentProcess, tmp_path: Path
) -> None:
    # Given a command that prints 40 KiB and fails the first time, prints other 40 KiB and succeeds
    # the second time
    marker = tmp_path / "ran-once"
    first = f"touch {marker}; seq 1 5000 | sed s/^/one-/; echo first; echo oops >&2; exit 3"
    command = f"if [ -e {marker} ]; then seq 1 5000 | sed s/^/two-/; echo second; else {first}; fi"
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
    assert f"all of it: fleetlink tasks output {execution.execution_id} --stream stdout --attempt 1" in text
    # and each attempt's complete output downloads whole, the first one's too
    for number, word in ((1, "one"), (2, "two")):
        expected = "".join(f"{word}-{i}\n" for i in range(1, 5001)) + (
            "first\n" if number == 1 else "second\n"
        )
        got = download(server, execution.execution_id, "--attempt", str(number))
        assert got == expected.encode()


def test_logs_of_a_quick_command_come_from_its_result(
    server: DevServer, operator: OperatorClient, agent: AgentProcess
) -> None:
    # Given a command that ends within a second (it sends no chunk)
    created = operator.create_task(command="echo quick; echo fast >&2", agent_ids=[agent.agent_id])
    (execution,) = wait_done(operator, created.task_id, [agent]).executions
    # When an operator asks for its logs
    logs = _fleetlink("tasks", "logs", created.task_id, env=operator_env(server))
    # Then its output is shown all the same, each stream where it belongs
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "quick\n", "fast\n")
    # and `tasks output` writes the inline copy (whole: there is no object for so short an output)
    assert download(server, execution.execution_id) == b"quick\n"
    assert download(server, execution.execution_id, "--stream", "stderr") == b"fast\n"


def test_an_agent_killed_mid_stream_loses_no_acknowledged_chunk_and_reports_after_restart(
    server: DevServer, operator: OperatorClient, tmp_path: Path
) -> None:
    # Given an agent of its own streaming a command's output (a line a second for eight seconds)
    agent_id, env = register_tagged(server, operator, tmp_path / "killed-agent", {"role": "killed"})
    first = launch_agent(agent_id, env)
    command = "for i in $(seq 1 8); do echo line$i; sleep 1; done"
    created = operator.create_task(command=command, agent_ids=[agent_id], timeout_seconds=60)
    try:

        def acknowledged() -> list[tuple[int, str]]:
            (execution,) = operator.get_task(created.task_id).executions
            page = operator.execution_output(execution.execution_id)
            return [(c.seq, "".join(p.data for p in c.parts)) for c in page.chunks]

        eventually(lambda: len(acknowledged()) >= 2, "two chunks acknowledged")
        # When the daemon is SIGKILLed mid-stream
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
    finally:
        first.process.kill()
    before = acknowledged()
    # And it starts again
    second = launch_agent(agent_id, env)
    try:
        (execution,) = wait_done(operator, created.task_id, [second]).executions
        # Then the result arrived, with the whole output
        assert (execution.status, execution.exit_code) == ("succeeded", 0), execution
        assert execution.output == "".join(f"line{i}\n" for i in range(1, 9))
        # and every chunk acknowledged before the kill is still there, unchanged
        after = acknowledged()
        assert after[: len(before)] == before
        # and the restarted daemon streamed on from the last acknowledged chunk: every line once
        assert [seq for seq, _ in after] == list(range(1, len(after) + 1))
        assert "".join(text for _, text in after) == execution.output
    finally:
        assert second.stop() == 0, second.output()
