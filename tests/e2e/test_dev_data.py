"""`fleetlink dev` remembers: agents, tokens, tasks and its operator token outlive a restart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import REPO, DevServer, start_dev_process
from tests.e2e.test_tasks_e2e import _env, _fleetlink, register_agent

pytestmark = [pytest.mark.e2e]


def test_a_restart_keeps_agents_tokens_and_tasks(tmp_path: Path) -> None:
    # Given a dev stack keeping its data in a folder, an agent registered with a two-use token,
    # and a task queued for it
    data = tmp_path / "dev-data"
    first = start_dev_process(None, options=("--data-dir", str(data)))
    operator_token = (data / "operator-token").read_text().strip()
    operator = _env(FLEETLINK_URL=first.url, FLEETLINK_OPERATOR_TOKEN=operator_token)
    try:
        token = _fleetlink("tokens", "create", "--max-uses", "2", env=operator).stdout.strip()
        agent_id, agent_env = register_agent(DevServer(first.url, operator_token), token, tmp_path / "agent")
        queued = _fleetlink("tasks", "run", "-t", agent_id, "--no-wait", "--", "true", env=operator)
        task_id = queued.stdout.strip()
    finally:
        # When it is stopped with Ctrl-C and started again on the same address
        assert first.interrupt() == 0, first.output()
    port = str(urlsplit(first.url).port)
    second = start_dev_process(None, options=("--data-dir", str(data), "--port", port))
    try:
        # Then it says what it restored, and keeps its operator token
        assert "restored" in "".join(second.stdout)
        assert (data / "operator-token").read_text().strip() == operator_token
        # And the agent heartbeats without registering again
        beat = _fleetlink("agent", "heartbeat", env=agent_env)
        assert beat.returncode == 0, beat.stderr
        assert "1 pending executions" in beat.stdout
        # And the operator still sees the agent and the task
        agents = json.loads(_fleetlink("agents", "ls", "--json", env=operator).stdout)
        assert [a["liveness"] for a in agents if a["agent_id"] == agent_id] == ["online"]
        tasks = json.loads(_fleetlink("tasks", "ls", "--json", env=operator).stdout)
        assert task_id in [t["task_id"] for t in tasks]
        # And the token's second use still registers a machine
        other, _ = register_agent(DevServer(second.url, operator_token), token, tmp_path / "other")
        assert other != agent_id
    finally:
        assert second.interrupt() == 0, second.output()
    # And neither start nor stop failed to save (the first save comes before the S3 buckets start)
    assert "cannot save" not in first.output() + second.output()


def test_a_second_dev_stack_on_the_same_data_is_refused(tmp_path: Path) -> None:
    # Given a dev stack using a data folder
    data = tmp_path / "dev-data"
    first = start_dev_process(None, options=("--data-dir", str(data)))
    try:
        # When another starts on the same folder
        second = subprocess.run(
            [sys.executable, "-m", "fleetlink.cli", "dev", "--port", "0", "--data-dir", str(data)],
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # Then it exits 1 saying which folder is taken and what to do instead
        assert second.returncode == 1
        assert f"another fleetlink dev is using {data}" in second.stderr
        assert "--ephemeral" in second.stderr
    finally:
        assert first.interrupt() == 0, first.output()
