"""Nothing an agent sends can take over the operator's terminal: a hostile agent (signed HTTP against a
real `fleetlink dev`) puts escape sequences in every string it controls, and every `fleetlink`
command that prints agent strings shows them inert; `-o json` keeps them exact."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fleetlink.auth.keys import generate_private_key, public_key_pem
from fleetlink.auth.signatures import sign_request
from fleetlink.core.entities import KeyAlg
from tests.e2e.conftest import DevServer
from tests.e2e.test_tasks_e2e import _env, _fleetlink

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

#: Retitle the terminal, clear it, move the cursor home, a CSI in its C1 form, a bidi override, a
#: carriage return that would overwrite the line: each must reach the terminal written out.
HOSTILE = "pwn\x1b]0;owned\x07\x1b[2J\x1b[H\x9b31m\u202e\rfake"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\r")


class HostileAgent:
    def __init__(self, server: DevServer) -> None:
        self.server = server
        self.key = generate_private_key(KeyAlg.ED25519)
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.operator = {"Authorization": f"Bearer {server.operator_token}"}
        token = self.http.post("/v1/registration-tokens", json={}, headers=self.operator).json()["token"]
        fingerprint = "h" * 40 + uuid.uuid4().hex
        body = {
            "fingerprint": fingerprint,
            "public_key": public_key_pem(self.key),
            "key_alg": "ed25519",
            "hardware": {
                "machine_id": uuid.uuid4().hex,
                "hostname": "hostile",
                "os": "linux",
                "arch": "x86_64",
            },
        }
        reply = self.send("POST", "/v1/agents/register", body, key_id=fingerprint, token=token)
        assert reply.status_code == 201, reply.text
        self.agent_id: str = reply.json()["agent_id"]

    def send(
        self, method: str, path: str, body: Any = None, *, key_id: str | None = None, token: str | None = None
    ) -> httpx.Response:
        raw = json.dumps(body).encode() if body is not None else None
        url = self.server.url + path
        headers = {"Content-Type": "application/json"} if raw else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        headers |= sign_request(
            method,
            url,
            headers,
            raw,
            private_key=self.key,
            key_id=key_id or self.agent_id,
            key_alg=KeyAlg.ED25519,
        )
        return self.http.request(method, url, content=raw, headers=headers)


@pytest.fixture(scope="module")
def hostile(dev_server: DevServer) -> dict[str, str]:
    """A hostile agent's strings everywhere the API lets free text through: a task's output and error,
    a tunnel's status error and its events (names, tags, statuses and hardware refuse control
    characters at the API). Returns the ids to look at."""
    agent = HostileAgent(dev_server)
    now = int(time.time() * 1000)
    # a task it runs, reporting hostile output and error
    task = agent.http.post(
        "/v1/tasks",
        json={"type": "shell", "command": "true", "targets": {"agent_ids": [agent.agent_id]}},
        headers=agent.operator,
    ).json()
    (claimed,) = agent.send("POST", f"/v1/agents/{agent.agent_id}/executions/claim", {"max": 1}).json()[
        "executions"
    ]
    result = {
        "attempt": claimed["attempt"],
        "status": "failed",
        "exit_code": 1,
        "output": f"line one\n{HOSTILE}\n",
        "error": HOSTILE,
        "started_at": now - 10,
        "finished_at": now,
    }
    assert agent.send("POST", f"/v1/executions/{claimed['execution_id']}/result", result).status_code == 200
    # a tunnel whose status and events carry hostile text
    tunnel = agent.http.post(
        f"/v1/agents/{agent.agent_id}/tunnels",
        json={
            "provider": "self_hosted",
            "name": "t",
            "mode": "http",
            "local_target": "127.0.0.1:9",
            "enabled": True,
        },
        headers=agent.operator,
    ).json()
    status = {"health": "down", "error_code": "target_unreachable", "error_message": HOSTILE}
    assert agent.send("PUT", f"/v1/tunnels/{tunnel['tunnel_id']}/status", status).status_code in (200, 204)
    event = {"level": "error", "event_type": "health_down", "message": HOSTILE, "created_at": now}
    posted = agent.send("POST", f"/v1/tunnels/{tunnel['tunnel_id']}/events", {"events": [event]})
    assert posted.status_code in (200, 201, 202, 204), posted.text
    return {"agent_id": agent.agent_id, "task_id": task["task_id"], "tunnel_id": tunnel["tunnel_id"]}


COMMANDS = {
    "tasks show": lambda ids: ["tasks", "show", ids["task_id"]],
    "tunnels show": lambda ids: ["tunnels", "show", ids["tunnel_id"]],
    "tunnels events": lambda ids: ["tunnels", "events", ids["tunnel_id"]],
    "tunnels events (fleet)": lambda ids: ["tunnels", "events", "--errors"],
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_escape_sequences_from_an_agent_are_shown_inert(
    dev_server: DevServer, hostile: dict[str, str], command: Any, terminal: bool
) -> None:
    # Given a hostile agent's strings in the cloud; When an operator runs a command that prints them
    extra = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0"} if terminal else {}
    env = _env(FLEETLINK_URL=dev_server.url, FLEETLINK_OPERATOR_TOKEN=dev_server.operator_token, **extra)
    if terminal:
        env.pop("NO_COLOR", None)
    result = _fleetlink(*command(hostile), env=env)
    assert result.returncode == 0, result.stderr
    # Then no control character of the agent's reaches the terminal, and its text is shown written out
    assert "\\e]0;owned" in result.stdout
    printed = result.stdout if not terminal else _without_own_styles(result.stdout)
    assert not [c for c in RAW if c in printed], repr(result.stdout[:3000])


def _without_own_styles(text: str) -> str:
    """The CLI's own colours (SGR ``ESC[…m`` that rich writes) removed: what is left came from data."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize(
    "command",
    [["tasks", "show", "{task_id}", "-o", "json"], ["tunnels", "events", "{tunnel_id}", "--json"]],
    ids=["tasks show", "tunnels events"],
)
def test_json_output_keeps_the_agents_strings_exact(
    dev_server: DevServer, hostile: dict[str, str], command: list[str]
) -> None:
    env = _env(FLEETLINK_URL=dev_server.url, FLEETLINK_OPERATOR_TOKEN=dev_server.operator_token)
    result = _fleetlink(*[part.format(**hostile) for part in command], env=env)
    assert result.returncode == 0, result.stderr
    assert HOSTILE in set(_strings(json.loads(result.stdout)))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
