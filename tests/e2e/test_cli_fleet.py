"""The command line at fleet scale, through the real `fleetlink` process against a real `fleetlink dev`
over HTTP: waits that never hang on an offline agent, lists that are complete or say they are not,
agents by name, registration refusals with their reason, JSON from every list and show.

The dev stack is this module's own (1 s heartbeats). One agent runs `fleetlink agent run`; every
other agent is registered through the API (signed requests, no subprocess) and never runs.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from fleetlink.auth.keys import public_key_pem
from fleetlink.cli.main import app as fleetlink_app
from fleetlink.client.operator import OperatorClient
from tests.e2e.conftest import REPO, DevServer
from tests.e2e.test_dev_stack import Agent, signed
from tests.e2e.test_tasks_e2e import (
    AgentProcess,
    _env,
    _fleetlink,
    eventually,
    launch_agent,
    register_agent,
)

pytestmark = [pytest.mark.e2e]

OPERATOR_TOKEN = "e2e-fleet-operator-token"
#: How many agents the paging test lists (more than two pages of 50).
FLEET_SIZE = 120
#: The shortest token lifetime the API allows; the expiry test waits out what is left of it.
SHORTEST_TTL_S = 60


@dataclass(frozen=True)
class Fleet:
    server: DevServer
    web: AgentProcess
    web_env: dict[str, str]
    run: str  # a tag value only this module's agents carry
    expiring_token: str
    expiring_since: float  # monotonic time it was minted

    def env(self, **extra: str) -> dict[str, str]:
        return _env(FLEETLINK_URL=self.server.url, FLEETLINK_OPERATOR_TOKEN=OPERATOR_TOKEN, **extra)

    def fleetlink(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        """Run the `fleetlink ARGS` process as the operator (piped); the finished process."""
        result = _fleetlink(*args, env=self.env())
        output = f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert result.returncode == expect, output
        assert "Traceback" not in result.stderr, output
        return result

    def cli(self, *args: str, expect: int = 0, env: dict[str, str] | None = None) -> Result:
        """`fleetlink ARGS` in this process (typer's runner; still over real HTTP): stdout and stderr."""
        environment = {
            "FLEETLINK_URL": self.server.url,
            "FLEETLINK_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "FLEETLINK_REGISTRATION_TOKEN": "",
            "COLUMNS": "200",
            "NO_COLOR": "1",
            **(env or {}),
        }
        result = CliRunner().invoke(fleetlink_app, list(args), env=environment)
        output = f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
        assert result.exit_code == expect, output
        assert "Traceback" not in result.output, output
        return result

    def api(self, method: str, path: str, **options: Any) -> Any:
        headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        answer = httpx.request(method, f"{self.server.url}/v1{path}", headers=headers, timeout=30, **options)
        assert answer.status_code < 300, answer.text
        return answer.json()

    def mint(self, *, max_uses: int = 1, ttl_seconds: int = 600, tags: dict[str, str] | None = None) -> str:
        body = {"max_uses": max_uses, "ttl_seconds": ttl_seconds, "tags": tags or {"run": self.run}}
        token: str = self.api("POST", "/registration-tokens", json=body)["token"]
        return token

    def register(self, token: str, *, name: str) -> str:
        """A new agent registered over the API (signed by its own new key); its id."""
        return register_over_api(self.server, token, name=name)


def register_over_api(server: DevServer, token: str, *, name: str) -> str:
    agent = Agent.new()
    payload = {
        "fingerprint": agent.fingerprint,
        "public_key": public_key_pem(agent.key),
        "key_alg": "ed25519",
        "hardware": {"machine_id": agent.fingerprint[:20], "hostname": "fleet-host", "os": "linux"},
        "name": name,
    }
    extra = {"Authorization": f"Bearer {token}"}
    url, headers, body = signed(
        server, agent, "/v1/agents/register", payload, key_id=agent.fingerprint, extra=extra
    )
    answer = httpx.post(url, headers=headers, content=body, timeout=30)
    assert answer.status_code == 201, answer.text
    agent_id: str = answer.json()["agent_id"]
    return agent_id


@pytest.fixture(scope="module")
def fleet(server: DevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """`web-<run>` running tasks (tagged run=<run>), and a token minted now that expires in 60 s."""
    run = uuid.uuid4().hex[:12]
    env = _env(FLEETLINK_URL=server.url, FLEETLINK_OPERATOR_TOKEN=OPERATOR_TOKEN)
    expiring = _fleetlink("tokens", "create", "--ttl", "1m", env=env)
    assert expiring.returncode == 0, expiring.stderr
    minted_at = time.monotonic()
    token = _fleetlink("tokens", "create", "--tag", f"run={run}", env=env).stdout.strip()
    web_id, web_env = register_agent(server, token, tmp_path_factory.mktemp("web"), name=f"web-{run}")
    web = launch_agent(web_id, web_env)
    with OperatorClient(server.url, OPERATOR_TOKEN) as operator:
        eventually(lambda: operator.get_agent(web_id).liveness == "online", "the web agent to check in")
    yield Fleet(server, web, web_env, run, expiring.stdout.strip(), minted_at)
    assert web.stop() == 0, web.output()


# --- waiting ----------------------------------------------------------------------------------------


def test_an_offline_target_does_not_hold_tasks_run(fleet: Fleet) -> None:
    # Given the running web agent and an agent that never runs, both tagged run=<run>
    away = fleet.register(fleet.mint(), name=f"away-{fleet.run}")
    # When a task goes to both, with a wait far longer than the test's own time limit
    result = fleet.fleetlink(
        "tasks", "run", "-t", f"tag:run={fleet.run}", "--wait-timeout", "1h", "--", "echo", "hello", expect=3
    )
    # Then the offline agent had its own line at once, the web agent's output was printed, and the
    # command ended (exit 3: all that answered succeeded) naming who did not answer and how to follow up
    assert f"away-{fleet.run} ({away}): never seen" in result.stderr
    assert f"== web-{fleet.run} ({fleet.web.agent_id}) succeeded, exit 0\nhello" in result.stdout
    assert f"1 offline, not answered: away-{fleet.run}" in result.stderr
    assert "fleetlink tasks wait tsk_" in result.stderr
    fleet.api("POST", f"/agents/{away}/revoke")


def test_the_wait_ends_listing_who_did_not_finish(fleet: Fleet) -> None:
    # When the web agent runs something longer than the wait
    result = fleet.fleetlink(
        "tasks", "run", "-t", fleet.web.agent_id, "--wait-timeout", "2s", "--", "sleep", "20", expect=124
    )
    # Then it stops waiting and names the agent, and the commands that follow up
    assert f"stopped waiting after 2s (--wait-timeout): 1 not finished: web-{fleet.run}" in result.stderr
    task_id = result.stderr.split("fleetlink tasks cancel ")[1].split()[0]
    fleet.cli("tasks", "cancel", task_id)


def test_a_percentage_of_the_targets_is_turned_into_a_count(fleet: Fleet) -> None:
    # When a task is sent with --max-concurrency 50% to one agent
    result = fleet.cli(
        "tasks", "run", "-t", fleet.web.agent_id, "--max-concurrency", "50%", "-o", "json", "--", "true"
    )
    # Then the server got a count: at least 1
    assert json.loads(result.stdout)["max_concurrency"] == 1


def test_a_duration_outside_the_servers_bounds_is_refused_before_sending(fleet: Fleet) -> None:
    result = fleet.cli("tasks", "run", "-t", "all", "--timeout", "2d", "--", "true", expect=2)
    assert "'2d' is above the maximum, 1d" in result.stderr


# --- lists ------------------------------------------------------------------------------------------


def test_a_list_of_120_agents_is_complete_with_all_and_says_it_is_cut_without(fleet: Fleet) -> None:
    # Given 120 agents tagged fleet=<id>
    group = uuid.uuid4().hex[:10]
    token = fleet.mint(max_uses=FLEET_SIZE, tags={"fleet": group})
    with ThreadPoolExecutor(max_workers=8) as pool:
        names = [f"n{i:03d}-{group}" for i in range(FLEET_SIZE)]
        registered = set(pool.map(lambda name: fleet.register(token, name=name), names))
    # When they are listed with --all / Then every one is printed
    everything = json.loads(
        fleet.cli("agents", "ls", "--tag", f"fleet={group}", "--all", "-o", "json").stdout
    )
    assert {agent["agent_id"] for agent in everything} == registered
    # When they are listed without it / Then 50 rows, and a hint with the command that continues
    cut = fleet.cli("agents", "ls", "--tag", f"fleet={group}")
    assert len(cut.stdout.splitlines()) == 1 + 50
    hint = next(line for line in cut.stderr.splitlines() if line.startswith("more: "))
    # And following the hints twice prints the rest, the last without a hint
    seen = {line.split()[0] for line in cut.stdout.splitlines()[1:]}
    for _ in range(2):
        words = shlex.split(hint.removeprefix("more: ").split(" (or ")[0])
        assert words[0] == "fleetlink"
        page = fleet.cli(*words[1:])
        seen |= {line.split()[0] for line in page.stdout.splitlines()[1:]}
        hint = next((line for line in page.stderr.splitlines() if line.startswith("more: ")), "")
    assert seen == registered
    assert hint == ""
    # And exactly the whole list is not said to be cut
    whole = fleet.cli("agents", "ls", "--tag", f"fleet={group}", "--limit", str(FLEET_SIZE))
    assert "more:" not in whole.stderr


# --- names ------------------------------------------------------------------------------------------


def test_a_name_works_in_agents_show_revoke_and_tunnels_create(fleet: Fleet) -> None:
    # Given an agent known by name
    name = f"named-{fleet.run}"
    agent_id = fleet.register(fleet.mint(), name=name)
    # When it is shown, given a tunnel, its tunnels listed and it is revoked, by name
    shown = json.loads(fleet.cli("agents", "show", name, "-o", "json").stdout)
    tunnel = json.loads(
        fleet.cli("tunnels", "create", name, "--name", "web", "--target", "127.0.0.1:9", "-o", "json").stdout
    )
    listed = json.loads(fleet.cli("tunnels", "ls", "--agent", name, "-o", "json").stdout)
    recovery = fleet.cli("agents", "recovery-token", name)
    revoked = json.loads(fleet.cli("agents", "revoke", name, "-o", "json").stdout)
    # Then each reached that agent
    assert shown["agent_id"] == tunnel["agent_id"] == revoked["agent_id"] == agent_id
    assert f" for {agent_id}: single use" in recovery.stderr
    assert recovery.stdout.strip()
    assert [t["tunnel_id"] for t in listed] == [tunnel["tunnel_id"]]
    assert revoked["state"] == "revoked"


def test_a_name_two_agents_share_is_refused_without_all_matching(fleet: Fleet) -> None:
    # Given two agents with the same name
    name = f"twin-{fleet.run}"
    token = fleet.mint(max_uses=2)
    ids = {fleet.register(token, name=name) for _ in range(2)}
    # When it is shown or targeted / Then it is refused, naming both ids and the fix
    refused = fleet.cli("agents", "show", name, expect=1)
    assert all(agent_id in refused.stderr for agent_id in ids)
    assert "Fix:" in refused.stderr
    refused = fleet.cli("tasks", "run", "-t", name, "--no-wait", "--", "true", expect=1)
    assert "--all-matching" in refused.stderr
    # And with --all-matching both get the task
    sent = fleet.cli("tasks", "run", "-t", name, "--all-matching", "--no-wait", "--", "true")
    assert "2 execution(s)" in sent.stderr
    fleet.cli("tasks", "cancel", sent.stdout.strip())
    for agent_id in ids:
        fleet.api("POST", f"/agents/{agent_id}/revoke")


def test_tags_are_added_and_removed_one_by_one(fleet: Fleet) -> None:
    agent_id = fleet.register(fleet.mint(), name=f"tagged-{fleet.run}")
    added = json.loads(fleet.cli("agents", "tag", agent_id, "zone=a", "-o", "json").stdout)
    assert added["tags"] == {"run": fleet.run, "zone": "a"}
    removed = json.loads(fleet.cli("agents", "untag", agent_id, "zone", "-o", "json").stdout)
    assert removed["tags"] == {"run": fleet.run}
    fleet.cli("agents", "untag", agent_id, "nope", expect=1)


# --- registration -----------------------------------------------------------------------------------


def _register_cli(fleet: Fleet, home: Path, *token: str) -> Result:
    env = {"FLEETLINK_STATE_DIR": str(home), "FLEETLINK_MACHINE_ID": f"fleet-{uuid.uuid4().hex}"}
    return fleet.cli("agent", "register", *token, expect=1, env=env)


def test_a_used_up_or_revoked_token_gives_its_reason_and_fix(fleet: Fleet, tmp_path: Path) -> None:
    # Given a one-use token, used, and a token an operator revoked
    used = fleet.mint()
    fleet.register(used, name=f"first-{fleet.run}")
    revoked = fleet.mint()
    fleet.cli("tokens", "revoke", revoked.split(".")[0])
    # When each is used to register / Then each is refused with its reason and a Fix line
    used_up = _register_cli(fleet, tmp_path / "a", "--token", used).stderr
    assert "is used up" in used_up
    assert "Fix: ask an operator for a new one" in used_up
    refused = _register_cli(fleet, tmp_path / "b", "--token", revoked).stderr
    assert "was revoked" in refused
    assert "Fix:" in refused


def test_a_missing_or_unknown_token_is_named_without_a_reason(fleet: Fleet, tmp_path: Path) -> None:
    # When registering without a token / Then the command line says so itself
    missing = _register_cli(fleet, tmp_path / "c").stderr
    assert "a new agent needs a registration token" in missing
    assert "Fix: fleetlink agent register --token" in missing
    # When registering with a token this stack never minted / Then the one generic answer, and a fix
    unknown = _register_cli(fleet, tmp_path / "d", "--token", "tok_01ARZ3NDEKTSV4RRFFQ69G5FAV.bogus").stderr
    assert "could not be authenticated" in unknown
    assert "Fix: copy the token whole" in unknown


# --- JSON everywhere --------------------------------------------------------------------------------


def test_every_list_and_show_prints_json(fleet: Fleet, tmp_path: Path) -> None:
    # Given a tunnel on the web agent, a collection with a read policy and a task
    tunnel = json.loads(
        fleet.cli(
            "tunnels", "create", fleet.web.agent_id, "--name", "json", "--target", "127.0.0.1:9", "--json"
        ).stdout
    )
    fleet.cli("records", "policy", f"c{fleet.run}", "--tag", f"run={fleet.run}")
    task_id = fleet.cli("tasks", "run", "-t", fleet.web.agent_id, "--no-wait", "--", "true").stdout.strip()
    execution_id = fleet.api("GET", f"/tasks/{task_id}")["executions"][0]["execution_id"]
    web_env = {"FLEETLINK_STATE_DIR": fleet.web_env["FLEETLINK_STATE_DIR"]}
    commands: list[tuple[list[str], dict[str, str] | None]] = [
        (["agents", "ls"], None),
        (["agents", "show", fleet.web.agent_id], None),
        (["tasks", "ls"], None),
        (["tasks", "show", task_id], None),
        (["tasks", "attempts", execution_id], None),
        (["tokens", "ls"], None),
        (["tunnels", "ls"], None),
        (["tunnels", "show", tunnel["tunnel_id"]], None),
        (["tunnels", "events", tunnel["tunnel_id"]], None),
        (["tunnels", "events"], None),
        (["tunnels", "health"], None),
        (["records", "query", f"c{fleet.run}", "--operator"], None),
        (["records", "policy", f"c{fleet.run}"], None),
        (["agent", "whoami"], web_env),
        (["agent", "status"], web_env),
        (["agent", "tunnels"], web_env),
        (["records", "ls"], web_env),
        (["records", "status"], web_env),
    ]
    for args, env in commands:
        # When it is asked for -o json and for --json / Then both print the same parseable JSON
        with_o = fleet.cli(*args, "-o", "json", env=env).stdout
        with_flag = fleet.cli(*args, "--json", env=env).stdout
        assert json.loads(with_o) is not None, args
        assert type(json.loads(with_o)) is type(json.loads(with_flag)), args
    # And without -o json an execution's attempts are printed for people
    assert "attempt 1: " in fleet.cli("tasks", "attempts", execution_id).stdout
    # And the tunnel's JSON has the API's field names
    api_fields = set(fleet.api("GET", f"/tunnels/{tunnel['tunnel_id']}"))
    shown = json.loads(fleet.cli("tunnels", "show", tunnel["tunnel_id"], "-o", "json").stdout)
    assert set(shown) == api_fields
    fleet.cli("tunnels", "rm", tunnel["tunnel_id"])


# --- last: a token minted when the module started has expired by now --------------------------------


def test_the_readme_typed_task_example_runs(fleet: Fleet, tmp_path: Path) -> None:
    """The README's typed-task handler example, as written there."""
    # Given an agent running with the example handler
    token = fleet.mint()
    home = tmp_path / "typed"
    agent_id, env = register_agent(fleet.server, token, home, name=f"typed-{fleet.run}")
    handler = f"disk.usage={REPO / 'examples' / 'task_handlers.py'}:disk_usage"
    agent = launch_agent(agent_id, env, "--handler", handler)
    try:
        with OperatorClient(fleet.server.url, OPERATOR_TOKEN) as operator:
            eventually(lambda: operator.get_agent(agent_id).liveness == "online", "the agent to check in")
        # When a disk.usage task is sent to it
        result = fleet.cli(
            "tasks", "run", "-t", agent_id, "--type", "disk.usage", "--input", '{"path": "/"}', "-o", "json"
        )
        # Then the handler's answer is the output
        (execution,) = json.loads(result.stdout)["executions"]
        assert execution["status"] == "succeeded"
        assert set(json.loads(execution["output"])) == {"path", "total", "used", "free"}
    finally:
        assert agent.stop() == 0, agent.output()


# Last in the module: the token minted at its start has had the other tests' time to expire.
def test_an_expired_token_gives_its_reason(fleet: Fleet, tmp_path: Path) -> None:
    # Given the token minted at the start with the shortest lifetime, waited out
    left = SHORTEST_TTL_S + 1 - (time.monotonic() - fleet.expiring_since)
    if left > 0:
        time.sleep(left)  # the token's lifetime, not a timing assertion
    # When it is used to register / Then the refusal says it expired, with a Fix line
    refused = _register_cli(fleet, tmp_path / "e", "--token", fleet.expiring_token).stderr
    assert "expired" in refused
    assert "Fix: ask an operator for a new one" in refused
