"""The agent's task runner with real subprocesses, a real SQLite store and an in-memory server."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fleetlink.agent.tasks.handlers import HandlerRegistry, in_process
from fleetlink.agent.tasks.runner import TaskRunner
from fleetlink.agent.tasks.service import NEVER_STARTED, RESTARTED, SEND_OUTPUT_BYTES, STOPPED
from fleetlink.agent.tasks.store import AgentStore, ExecutionRecord, ExecutionResult, ResultStatus, RowStatus
from fleetlink.client.http import FleetlinkApiError
from tests.fakes.agent_api import FakeAgentApi, api_error

AGENT_ID = "agt_01JABCDEFGHJKMNPQRSTVWXYZ0"
#: Guards against a hung test; never an assertion about speed.
DEADLINE_S = 30.0


def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait until ``check()`` holds, failing after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)  # polling interval, not an assertion


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def dead_pid() -> int:
    process = subprocess.Popen(["/bin/true"], start_new_session=True)
    process.wait()
    return process.pid


@dataclass
class Agent:
    """A TaskRunner on a real store, talking to a fake server, looping in a thread once started."""

    api: FakeAgentApi
    store: AgentStore
    runner: TaskRunner
    thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> Agent:
        def run() -> None:
            try:
                self.runner.run()
            except BaseException as exc:  # kept for the test to look at
                self.error = exc

        self.thread = threading.Thread(target=run, name="runner", daemon=True)
        self.thread.start()
        return self

    def run(self, command: str | None = None, **lease: Any) -> dict[str, Any]:
        """Queue one execution, wake the runner, and return the result it reports."""
        execution_id = self.api.queue(command, **lease)
        self.runner.wake()
        return self.api.result(execution_id)

    def row(self, execution_id: str) -> ExecutionRecord:
        record = self.store.get(execution_id)
        assert record is not None, f"{execution_id} is not in the store"
        return record

    def status(self, execution_id: str) -> RowStatus | None:
        record = self.store.get(execution_id)
        return None if record is None else record.status

    def wait_running(self, execution_id: str) -> ExecutionRecord:
        eventually(lambda: self.status(execution_id) is RowStatus.RUNNING, f"{execution_id} to run")
        return self.row(execution_id)

    def stop(self) -> None:
        self.runner.request_stop(urgent=True)
        if self.thread is not None:
            self.thread.join(DEADLINE_S)
            assert not self.thread.is_alive(), "the runner did not stop"


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def make(registry: HandlerRegistry | None = None, **options: Any) -> Agent:
        store = AgentStore(tmp_path / "agent.db")
        api = FakeAgentApi()
        runner = TaskRunner(api, store, registry, AGENT_ID, **options)
        agent = Agent(api, store, runner)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.stop()
        agent.store.close()


@pytest.fixture
def agent(make_agent: Callable[..., Agent]) -> Agent:
    return make_agent().start()


# --- shell tasks ---------------------------------------------------------------------------------


def test_echo_succeeds_with_its_output(agent: Agent) -> None:
    # Given a runner / When it runs `echo hello`
    result = agent.run("echo hello")
    # Then it reports success, exit 0 and the output
    assert (result["status"], result["exit_code"], result["output"]) == ("succeeded", 0, "hello\n")
    assert result["error"] is None
    assert result["started_at"] <= result["finished_at"]


def test_stderr_is_captured_apart_from_stdout(agent: Agent) -> None:
    result = agent.run("echo out; echo err >&2")
    assert (result["output"], result["stderr"]) == ("out\n", "err\n")


def test_a_non_zero_exit_fails_with_the_exit_code(agent: Agent) -> None:
    result = agent.run("exit 3")
    assert (result["status"], result["exit_code"]) == ("failed", 3)


def test_the_execution_is_recorded_locally_and_marked_reported(agent: Agent) -> None:
    # Given an execution that ran and was reported
    execution_id = agent.api.queue("echo stored")
    agent.runner.wake()
    agent.api.result(execution_id)
    # Then the local row holds its result and, once the server answered, is marked reported
    eventually(lambda: agent.status(execution_id) is RowStatus.REPORTED, "the row to be reported")
    row = agent.row(execution_id)
    assert (row.result_status, row.output, row.server_status) == (
        ResultStatus.SUCCEEDED,
        "stored\n",
        "succeeded",
    )
    assert row.pid is not None
    assert row.pid == row.pgid


def test_the_task_sees_its_execution_id(agent: Agent) -> None:
    result = agent.run('echo "$FLEETLINK_EXECUTION_ID $FLEETLINK_ATTEMPT"', execution_id="exe_env", attempt=2)
    assert result["output"] == "exe_env 2\n"


def test_a_timeout_kills_the_whole_process_group(agent: Agent) -> None:
    # Given a task that starts a background sleep and a foreground sleep, with a 1 s timeout
    execution_id = agent.api.queue("sleep 30 & sleep 30", timeout_seconds=1)
    agent.runner.wake()
    pgid = agent.wait_running(execution_id).pgid
    assert pgid is not None
    # When the timeout passes / Then it is reported timed_out
    result = agent.api.result(execution_id)
    assert result["status"] == "timed_out"
    assert result["exit_code"] is None
    # And no process of its group survives
    eventually(lambda: group_gone(pgid), "the process group to be gone")


def test_output_over_the_cap_is_truncated_with_the_total_byte_count(make_agent: Callable[..., Agent]) -> None:
    # Given a runner that keeps 1000 bytes of output
    agent = make_agent(output_cap=1000).start()
    # When a task prints 5000 bytes
    execution_id = agent.api.queue("head -c 5000 /dev/zero | tr '\\0' x")
    agent.runner.wake()
    result = agent.api.result(execution_id)
    # Then it succeeds, with the first and last 1000 bytes, flagged truncated, and the total counted
    assert result["status"] == "succeeded"
    assert result["output"] == "x" * 1000 + "\n[... 3000 bytes omitted ...]\n" + "x" * 1000
    assert (result["output_truncated"], result["output_bytes"]) == (True, 5000)
    assert agent.row(execution_id).output_bytes == 5000


def test_a_huge_output_is_drained_and_sent_within_the_request_limit(agent: Agent) -> None:
    # Given a task printing 10 MB / When it runs
    result = agent.run("head -c 10000000 /dev/zero | tr '\\0' x")
    # Then it finishes (the pipe was drained), and at most 64 KiB of output is sent, with the true total
    assert result["status"] == "succeeded"
    assert len(result["output"].encode()) <= SEND_OUTPUT_BYTES
    assert (result["output_truncated"], result["output_bytes"]) == (True, 10_000_000)


def test_a_process_killed_by_a_signal_fails_with_128_plus_the_signal(agent: Agent) -> None:
    result = agent.run("kill -9 $$")
    assert (result["status"], result["exit_code"]) == ("failed", 137)
    assert result["error"] == "killed by SIGKILL"


# --- other task types ----------------------------------------------------------------------------


def test_an_unknown_type_is_a_reported_failure(agent: Agent) -> None:
    result = agent.run(type="frobnicate", input={"x": 1})
    assert result["status"] == "failed"
    assert result["error"] == "no handler for task type frobnicate"


def test_a_registered_handlers_result_becomes_the_output(make_agent: Callable[..., Agent]) -> None:
    # Given a handler registered for "sum"
    registry = HandlerRegistry()

    @registry.register("sum")
    def add_up(task_input: dict[str, Any]) -> dict[str, int]:
        return {"total": sum(task_input["numbers"])}

    agent = make_agent(registry).start()
    # When a "sum" task runs
    result = agent.run(type="sum", input={"numbers": [1, 2, 3]})
    # Then its result is the output, as JSON
    assert result["status"] == "succeeded"
    assert json.loads(result["output"]) == {"total": 6}


def test_a_handler_exception_is_a_failure_with_the_error(make_agent: Callable[..., Agent]) -> None:
    registry = HandlerRegistry()

    @registry.register("boom")
    def explode(task_input: dict[str, Any]) -> None:
        raise RuntimeError("disk on fire")

    result = make_agent(registry).start().run(type="boom", input={})
    assert (result["status"], result["error"]) == ("failed", "RuntimeError: disk on fire")


def sum_in_own_process(task_input: dict[str, Any]) -> dict[str, int]:
    """A module-level handler: known by reference, so it runs under the execution's supervisor."""
    print("noise a handler prints")  # kept off the result
    return {"total": sum(task_input["numbers"]), "pid": os.getpid()}


def fail_in_own_process(task_input: dict[str, Any]) -> None:
    raise RuntimeError("disk on fire")


def sleep_in_own_process(task_input: dict[str, Any]) -> None:
    time.sleep(float(task_input["seconds"]))


def test_a_handler_known_by_reference_runs_in_a_process_of_its_own_with_the_same_results(
    make_agent: Callable[..., Agent],
) -> None:
    # Given module-level handlers (the registry knows them by reference)
    registry = HandlerRegistry()
    registry.add("sum", sum_in_own_process)
    registry.add("boom", fail_in_own_process)
    registry.add("nap", sleep_in_own_process)
    assert registry.reference("sum") == f"{__name__}:sum_in_own_process"
    agent = make_agent(registry).start()
    # When each kind of ending happens
    summed = agent.run(type="sum", input={"numbers": [1, 2, 3]})
    failed = agent.run(type="boom", input={})
    napped = agent.run(type="nap", input={"seconds": 30}, timeout_seconds=1)
    # Then they read as a handler's in the daemon would: JSON result, the error, the timeout
    assert summed["status"] == "succeeded"
    output = json.loads(summed["output"])
    assert output["total"] == 6
    assert output["pid"] != os.getpid()  # it ran in a process of its own
    assert "noise a handler prints" in (summed.get("stderr") or "")
    assert (failed["status"], failed["error"]) == ("failed", "RuntimeError: disk on fire")
    assert (napped["status"], napped["error"]) == ("timed_out", "timed out after 1 s")


@in_process
def must_run_in_the_daemon(task_input: dict[str, Any]) -> None:
    return None


def test_a_handler_marked_in_process_and_a_local_function_run_in_the_daemon() -> None:
    registry = HandlerRegistry()
    registry.add("marked", must_run_in_the_daemon)
    registry.add("local", lambda task_input: None)
    assert registry.reference("marked") is None
    assert registry.reference("local") is None


def test_shell_is_built_in_and_cannot_be_replaced() -> None:
    registry = HandlerRegistry()
    assert "shell" in registry
    with pytest.raises(ValueError, match="built in"):
        registry.add("shell", lambda task_input: None)


# --- talking to the server -----------------------------------------------------------------------


def test_a_running_execution_is_listed_in_heartbeats(agent: Agent) -> None:
    # Given a long task running
    execution_id = agent.api.queue("sleep 30")
    agent.runner.wake()
    agent.wait_running(execution_id)
    # When the runner beats again / Then the heartbeat renews its lease
    agent.runner.wake()
    eventually(lambda: any(execution_id in beat for beat in agent.api.heartbeats), "a heartbeat listing it")


def test_cancel_kills_the_process_and_reports(agent: Agent) -> None:
    # Given a long task running
    execution_id = agent.api.queue("sleep 30")
    agent.runner.wake()
    pgid = agent.wait_running(execution_id).pgid
    assert pgid is not None
    # When the server answers a heartbeat with cancel for it
    agent.api.cancel(execution_id)
    agent.runner.wake()
    # Then the process group is killed and the execution is reported failed "cancelled"
    result = agent.api.result(execution_id)
    assert (result["status"], result["error"]) == ("failed", "cancelled")
    eventually(lambda: group_gone(pgid), "the process group to be gone")
    eventually(lambda: agent.row(execution_id).server_status == "cancelled", "the server's verdict stored")


def test_at_most_concurrency_executions_run_at_once(make_agent: Callable[..., Agent]) -> None:
    # Given a runner with 2 slots and 3 long tasks queued
    agent = make_agent(concurrency=2).start()
    ids = [agent.api.queue("sleep 30") for _ in range(3)]
    agent.runner.wake()
    # When two are running
    for execution_id in ids[:2]:
        agent.wait_running(execution_id)
    # Then the third is left queued on the server
    assert [lease.execution_id for lease in agent.api.queued] == ids[2:]
    assert agent.store.get(ids[2]) is None


def test_a_transient_report_failure_is_retried(make_agent: Callable[..., Agent]) -> None:
    # Given a server that is unavailable for the first report
    agent = make_agent()
    agent.api.report_errors.append(api_error(503, "unavailable"))
    agent.start()
    # When a task finishes
    execution_id = agent.api.queue("echo again")
    agent.runner.wake()
    # Then the result is reported on a later try, and the row ends reported
    assert agent.api.result(execution_id)["output"] == "again\n"
    eventually(lambda: agent.status(execution_id) is RowStatus.REPORTED, "the row to be reported")


def test_a_conflict_means_the_server_moved_on(make_agent: Callable[..., Agent]) -> None:
    # Given a server that answers 409 to the result
    agent = make_agent()
    agent.api.report_errors.append(api_error(409, "conflict", "attempt 1 is not the current attempt"))
    agent.start()
    # When a task finishes
    execution_id = agent.api.queue("echo late")
    agent.runner.wake()
    # Then the row is marked reported (not retried forever), noting the refusal
    eventually(lambda: agent.status(execution_id) is RowStatus.REPORTED, "the row to be reported")
    assert agent.row(execution_id).server_status == "refused:409"
    assert execution_id not in agent.api.results


def test_a_revoked_agent_stops_the_runner(agent: Agent) -> None:
    # Given the server starts refusing this agent
    agent.api.heartbeat_errors.append(api_error(403, "agent-revoked"))
    # When the runner beats / Then it stops, with the server's refusal
    agent.runner.wake()
    assert agent.thread is not None
    agent.thread.join(DEADLINE_S)
    assert not agent.thread.is_alive()
    assert isinstance(agent.error, FleetlinkApiError)
    assert agent.error.status == 403


# --- stopping and restarting ---------------------------------------------------------------------


def test_a_stop_without_grace_stops_and_reports_running_tasks(make_agent: Callable[..., Agent]) -> None:
    # Given a long task running on a runner that gives no grace on stop
    agent = make_agent(stop_grace_s=0).start()
    execution_id = agent.api.queue("sleep 30")
    agent.runner.wake()
    pgid = agent.wait_running(execution_id).pgid
    assert pgid is not None
    # When the runner is asked to stop
    agent.runner.request_stop()
    # Then the task is stopped and reported as failed because the agent stopped
    result = agent.api.result(execution_id)
    assert (result["status"], result["error"]) == ("failed", STOPPED)
    eventually(lambda: group_gone(pgid), "the process group to be gone")


def test_a_restart_mid_task_reports_it_failed(make_agent: Callable[..., Agent], tmp_path: Path) -> None:
    # Given a store left by an agent that died while a task ran (its process is gone)
    with AgentStore(tmp_path / "agent.db") as before:
        before.record_claimed(
            execution_id="exe_lost",
            attempt=1,
            task_id="tsk_1",
            type="shell",
            command="sleep 30",
            timeout_seconds=60,
        )
        pid = dead_pid()
        before.mark_started("exe_lost", 1, pid=pid, pgid=pid)
    # When a new runner starts on it
    agent = make_agent().start()
    # Then the execution is reported failed, saying why
    result = agent.api.result("exe_lost")
    assert (result["status"], result["error"]) == ("failed", RESTARTED)


def test_a_task_that_outlived_its_agent_is_stopped_on_restart(
    make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    # Given a store left by an agent that was killed while its task kept running
    survivor = subprocess.Popen(["/bin/sleep", "30"], start_new_session=True)
    try:
        with AgentStore(tmp_path / "agent.db") as before:
            before.record_claimed(
                execution_id="exe_orphan",
                attempt=1,
                task_id="tsk_1",
                type="shell",
                command="sleep 30",
                timeout_seconds=60,
            )
            before.mark_started("exe_orphan", 1, pid=survivor.pid, pgid=survivor.pid)
        # When a new runner starts on it
        agent = make_agent().start()
        # Then the leftover process is stopped and the execution reported failed
        result = agent.api.result("exe_orphan")
        assert (result["status"], result["error"]) == ("failed", RESTARTED)
        assert survivor.wait(DEADLINE_S) < 0
    finally:
        survivor.kill()
        survivor.wait()


def test_a_claim_never_started_is_reported_failed_on_restart(
    make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    with AgentStore(tmp_path / "agent.db") as before:
        before.record_claimed(
            execution_id="exe_early",
            attempt=1,
            task_id="tsk_1",
            type="shell",
            command="true",
            timeout_seconds=60,
        )
    result = make_agent().start().api.result("exe_early")
    assert (result["status"], result["error"]) == ("failed", NEVER_STARTED)


def test_a_finished_but_unreported_execution_is_reported_on_start_up(
    make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    # Given a store holding a result the previous run could not send
    with AgentStore(tmp_path / "agent.db") as before:
        before.record_claimed(
            execution_id="exe_owed",
            attempt=2,
            task_id="tsk_1",
            type="shell",
            command="echo hi",
            timeout_seconds=60,
        )
        before.record_finished(
            "exe_owed",
            2,
            ExecutionResult(
                status=ResultStatus.SUCCEEDED, started_at=1_000, finished_at=2_000, exit_code=0, output="hi\n"
            ),
        )
    # When a new runner starts / Then it sends exactly that result
    result = make_agent().start().api.result("exe_owed")
    assert (result["attempt"], result["status"], result["output"]) == (2, "succeeded", "hi\n")
    assert (result["started_at"], result["finished_at"]) == (1_000, 2_000)
