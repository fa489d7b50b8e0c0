"""The command line as a newcomer and an operator meet it, through the real `fleetlink` process against
a real `fleetlink dev` over HTTP: actionable errors, JSON and plain output, `tasks run`'s targets,
budgets and limits, live states, registration tokens.

The dev stack here is this module's own, with a 1 s heartbeat interval. Agents are separate
identities (own state dir and machine id): `web-…` runs `fleetlink agent run`; `away-…` is
registered and never runs.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fleetlink.agent.identity import IdentityStore
from fleetlink.agent.tasks.service import CANCELLED
from tests.e2e.conftest import DevServer
from tests.e2e.test_tasks_e2e import AgentProcess, _env, _fleetlink, eventually, launch_agent, register_agent

pytestmark = [pytest.mark.e2e]

OPERATOR_TOKEN = "e2e-ux-operator-token"
BOX_DRAWING = set("│─┃━┏┓┗┛┌┐└┘╭╮╰╯├┤┬┴┼")


@dataclass(frozen=True)
class Fleet:
    server: DevServer
    web: AgentProcess
    away_id: str
    run: str  # a tag value only this module's agents carry

    def operator_env(self, **extra: str) -> dict[str, str]:
        return _env(FLEETLINK_URL=self.server.url, FLEETLINK_OPERATOR_TOKEN=OPERATOR_TOKEN, **extra)

    def fleetlink(self, *args: str, expect: int | None = 0) -> tuple[str, str]:
        """Run `fleetlink ARGS` as the operator (piped, as in a script); its stdout and stderr."""
        result = _fleetlink(*args, env=self.operator_env())
        output = f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        if expect is not None:
            assert result.returncode == expect, output
        assert "Traceback" not in result.stderr, output
        return result.stdout, result.stderr


@pytest.fixture(scope="module")
def fleet(server: DevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """`web-<run>` running tasks and `away-<run>` registered but never started, both tagged run=<run>."""
    run = uuid.uuid4().hex[:12]
    env = _env(FLEETLINK_URL=server.url, FLEETLINK_OPERATOR_TOKEN=OPERATOR_TOKEN)
    created = _fleetlink("tokens", "create", "--max-uses", "2", "--tag", f"run={run}", env=env)
    token = created.stdout.strip()
    web_id, web_env = register_agent(server, token, tmp_path_factory.mktemp("web"), name=f"web-{run}")
    away_id, _ = register_agent(server, token, tmp_path_factory.mktemp("away"), name=f"away-{run}")
    web = launch_agent(web_id, web_env)
    fleet = Fleet(server, web, away_id, run)
    # tasks run does not wait for an agent that is not online: the web agent checks in first
    eventually(lambda: _api(fleet, f"/agents/{web_id}")["liveness"] == "online", "the web agent to check in")
    yield fleet
    code = web.stop()
    assert code == 0, web.output()


# --- errors that name their fix -------------------------------------------------------------------


def test_without_the_operator_token_the_cli_names_it_and_where_it_is(server: DevServer) -> None:
    # Given the dev stack's URL but no FLEETLINK_OPERATOR_TOKEN
    env = _env(FLEETLINK_URL=server.url)
    env.pop("FLEETLINK_OPERATOR_TOKEN", None)
    # When the operator lists agents
    result = _fleetlink("agents", "ls", env=env)
    # Then it fails naming the variable and that `make run` prints it, with no AWS advice
    assert result.returncode == 1
    assert "FLEETLINK_OPERATOR_TOKEN is not set" in result.stderr
    assert "make run" in result.stderr
    assert "aws" not in result.stderr.lower()


def test_a_wrong_operator_token_names_the_fix(server: DevServer) -> None:
    env = _env(FLEETLINK_URL=server.url, FLEETLINK_OPERATOR_TOKEN="not-the-token")
    result = _fleetlink("tasks", "ls", env=env)
    assert result.returncode == 1
    assert "Fix: export FLEETLINK_OPERATOR_TOKEN=" in result.stderr


def test_an_unreachable_dev_stack_says_to_start_it(tmp_path: Path) -> None:
    env = _env(FLEETLINK_URL="http://127.0.0.1:9", FLEETLINK_OPERATOR_TOKEN="x")
    result = _fleetlink("agents", "ls", env=env)
    assert result.returncode == 1
    assert "make run" in result.stderr


def _registered(server: DevServer, home: Path, run: str) -> tuple[str, dict[str, str]]:
    env = _env(FLEETLINK_URL=server.url, FLEETLINK_OPERATOR_TOKEN=OPERATOR_TOKEN)
    token = _fleetlink("tokens", "create", "--tag", f"run={run}", env=env).stdout.strip()
    return register_agent(server, token, home)


def test_an_agent_the_control_plane_does_not_know_is_told_to_register_again(
    server: DevServer, tmp_path: Path
) -> None:
    # Given an agent whose id the control plane does not know (as after a restart without its data)
    _, env = _registered(server, tmp_path / "agent", "unknown")
    store = IdentityStore(tmp_path / "agent")
    identity = store.load_identity()
    assert identity is not None
    store.save_identity(dataclasses.replace(identity, agent_id="agt_01KDXRYP0000000000000000ZZ"))
    # When it heartbeats
    result = _fleetlink("agent", "heartbeat", env=env)
    # Then it is told why and which command fixes it
    assert result.returncode == 1, result.stderr
    assert "does not know" in result.stderr
    assert "restarted without its data" in result.stderr
    assert "Fix: register again: fleetlink agent register --token" in result.stderr


def test_an_agent_whose_key_was_replaced_is_told_so(server: DevServer, tmp_path: Path) -> None:
    # Given a registered agent whose key is no longer the one the control plane holds
    _, env = _registered(server, tmp_path / "agent", "replaced")
    store = IdentityStore(tmp_path / "agent")
    store.key_path.unlink()
    store.load_or_create_key()
    # When the daemon starts
    result = _fleetlink("agent", "run", "--first-heartbeat-jitter", "0", env=env)
    # Then it stops, saying the key was replaced and how to register again
    assert result.returncode == 1, result.stdout + result.stderr
    assert "replaced" in result.stderr
    assert "fleetlink agents show" in result.stderr
    assert "Fix:" in result.stderr
    assert "fleetlink agent register --token" in result.stderr


# --- JSON and plain output ----------------------------------------------------------------------


def _api(fleet: Fleet, path: str) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    answer = httpx.get(f"{fleet.server.url}/v1{path}", headers=headers, timeout=30)
    answer.raise_for_status()
    document: dict[str, object] = answer.json()
    return document


def test_every_list_and_show_command_prints_the_apis_fields_as_json(fleet: Fleet) -> None:
    # Given a finished task on the web agent
    stdout, _ = fleet.fleetlink("tasks", "run", "-t", fleet.web.agent_id, "-o", "json", "--", "echo", "j")
    task = json.loads(stdout)
    assert task["executions"][0]["output"] == "j\n"
    listed_agents = _api(fleet, "/agents")["items"]
    listed_tasks = _api(fleet, "/tasks")["items"]
    assert isinstance(listed_agents, list)
    assert isinstance(listed_tasks, list)
    # When each list and show command is asked for JSON / Then it parses, with the API's field names
    cases: list[tuple[list[str], set[str]]] = [
        (["agents", "ls", "--json"], set(listed_agents[0])),
        (
            ["agents", "show", fleet.web.agent_id, "-o", "json"],
            set(_api(fleet, f"/agents/{fleet.web.agent_id}")),
        ),
        (["tasks", "ls", "--json"], set(listed_tasks[0])),
        (
            ["tasks", "show", task["task_id"], "--output", "json"],
            set(_api(fleet, f"/tasks/{task['task_id']}")),
        ),
    ]
    for args, api_fields in cases:
        printed = json.loads(fleet.fleetlink(*args)[0])
        first = printed[0] if isinstance(printed, list) else printed
        assert set(first) == api_fields, args


def test_piped_tables_are_plain_text(fleet: Fleet) -> None:
    # When tables are printed to a pipe
    for args in (["agents", "ls"], ["tasks", "ls"], ["agents", "show", fleet.web.agent_id]):
        stdout, _ = fleet.fleetlink(*args)
        # Then there is no box drawing and no line padded with trailing spaces
        assert not BOX_DRAWING & set(stdout), args
        assert all(line == line.rstrip() for line in stdout.splitlines()), args


def test_tasks_ls_shows_a_command_not_found_as_failed(fleet: Fleet) -> None:
    # Given a task whose command exits 127
    stdout, _ = fleet.fleetlink("tasks", "run", "-t", fleet.web.agent_id, "--", "no-such-command-x", expect=1)
    assert "127" in stdout
    # When the tasks are listed
    listed, _ = fleet.fleetlink("tasks", "ls")
    (row,) = [line for line in listed.splitlines() if "no-such-command-x" in line]
    # Then it stands out as failed, with its count
    assert "failed" in row.split()
    assert "1 failed" in row
    assert "succeeded" not in row


# --- tasks run ------------------------------------------------------------------------------------


def test_wait_timeout_against_an_offline_agent_warns_then_exits_non_zero(fleet: Fleet) -> None:
    # When a task is sent to the agent that never runs, waiting at most 2 s
    result = _fleetlink(
        "tasks",
        "run",
        "-t",
        fleet.away_id,
        "--wait-timeout",
        "2",
        "--",
        "true",
        env=fleet.operator_env(),
        timeout=60,
    )
    # Then, before waiting, a line names it and when it was last seen; then the wait ends with 3
    # (offline targets did not answer), naming it again
    assert result.returncode == 3, result.stderr
    warning = result.stderr.index(f"away-{fleet.run} ({fleet.away_id}): never seen")
    assert "1 of 1 targets not online: not waited for" in result.stderr
    assert warning < result.stderr.index(f"1 offline, not answered: away-{fleet.run}")


def test_max_errors_stops_dispatching_after_one_failure(fleet: Fleet) -> None:
    # Given both agents targeted by name glob, the away one offline, and an error budget of 1
    result = _fleetlink(
        "tasks",
        "run",
        "-t",
        f"*-{fleet.run}",
        "--max-errors",
        "1",
        "-o",
        "json",
        "--",
        "exit 1",
        env=fleet.operator_env(),
    )
    # When the web agent fails / Then the away agent's execution is never dispatched: cancelled
    assert result.returncode == 1, result.stderr
    task = json.loads(result.stdout)
    by_agent = {e["agent_id"]: e for e in task["executions"]}
    assert by_agent[fleet.web.agent_id]["status"] == "failed"
    assert by_agent[fleet.away_id]["status"] == "cancelled"
    assert "max_errors" in by_agent[fleet.away_id]["error"]


def test_targets_all_and_tag_reach_the_same_agents(fleet: Fleet) -> None:
    by_tag, _ = fleet.fleetlink("tasks", "run", "-t", f"tag:run={fleet.run}", "--no-wait", "--", "true")
    task = json.loads(fleet.fleetlink("tasks", "show", by_tag.strip(), "--json")[0])
    assert {e["agent_id"] for e in task["executions"]} == {fleet.web.agent_id, fleet.away_id}
    fleet.fleetlink("tasks", "cancel", by_tag.strip())
    everyone, _ = fleet.fleetlink("tasks", "run", "-t", "all", "--no-wait", "--", "true")
    task = json.loads(fleet.fleetlink("tasks", "show", everyone.strip(), "--json")[0])
    assert {fleet.web.agent_id, fleet.away_id} <= {e["agent_id"] for e in task["executions"]}
    fleet.fleetlink("tasks", "cancel", everyone.strip())


def test_the_old_tag_spelling_is_refused_with_the_right_one(fleet: Fleet) -> None:
    _, stderr = fleet.fleetlink("tasks", "run", "-t", "tag:run:x", "--", "true", expect=2)
    assert "tag:run=x" in stderr
    _, stderr = fleet.fleetlink("agents", "ls", "--tag", f"run:{fleet.run}")
    assert f"write run={fleet.run}" in stderr


def test_a_running_command_shows_running_and_a_cancel_is_logged_as_cancelled(fleet: Fleet) -> None:
    # Given a long command on the web agent
    task_id = fleet.fleetlink("tasks", "run", "-t", fleet.web.agent_id, "--no-wait", "--", "sleep 60")[
        0
    ].strip()

    def status() -> str:
        task = json.loads(fleet.fleetlink("tasks", "show", task_id, "--json")[0])
        return str(task["executions"][0]["status"])

    # Then the server shows it running once the agent started it, with a start time
    eventually(lambda: status() == "running", "the execution to show running")
    execution = json.loads(fleet.fleetlink("tasks", "show", task_id, "--json")[0])["executions"][0]
    assert execution["started_at"] is not None
    # When it is cancelled / Then the daemon logs it as cancelled, not as a failure
    fleet.fleetlink("tasks", "cancel", task_id)
    line = f"finished {execution['execution_id']} (attempt 1): {CANCELLED}"
    eventually(lambda: line in fleet.web.output(), "the daemon to log the cancellation")
    assert f"{execution['execution_id']} (attempt 1): failed" not in fleet.web.output()


# --- registration tokens --------------------------------------------------------------------------


def test_tokens_are_listed_and_revoked(fleet: Fleet) -> None:
    routes = httpx.get(f"{fleet.server.url}/v1/openapi.json", timeout=30).json()["paths"]
    if "get" not in routes.get("/v1/registration-tokens", {}):
        pytest.skip("the API has no GET /v1/registration-tokens yet (identity-and-trust adds it)")
    # Given a token just minted
    fleet.fleetlink("tokens", "create", "--tag", "listed=yes")
    # When the tokens are listed / Then it is there, with its uses and no secret
    tokens = json.loads(fleet.fleetlink("tokens", "ls", "--json")[0])
    token_id = next(t["token_id"] for t in tokens if t["tags"].get("listed") == "yes")
    assert "token" not in tokens[0]
    # When it is revoked / Then the list says so
    fleet.fleetlink("tokens", "revoke", token_id)
    (row,) = [line for line in fleet.fleetlink("tokens", "ls")[0].splitlines() if line.startswith(token_id)]
    assert "revoked" in row
