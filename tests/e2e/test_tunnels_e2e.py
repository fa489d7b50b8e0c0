"""Tunnels end to end over real HTTP: a dev stack, a real `fleetlink agent run`, real local services.

An operator creates a self_hosted http tunnel with two routes; the agent starts it after a heartbeat;
requests to the tunnel's address reach the right local server by longest prefix; its health reads
up in `fleetlink tunnels ls`; a stopped target makes it degraded, with events; a SIGKILLed agent
brings it back on restart without the operator; disable and delete stop it.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetlink.client.operator import OperatorClient
from tests.e2e.conftest import DevServer
from tests.e2e.test_tasks_e2e import AgentProcess, _env, _fleetlink, eventually, launch_agent, register_tagged
from tests.integration.tunnels.targets import TargetServer, free_port

pytestmark = [pytest.mark.e2e]

OPERATOR_TOKEN = "e2e-tunnels-operator-token"


@pytest.fixture
def targets() -> Iterator[dict[str, TargetServer]]:
    """Three real HTTP services: `root` behind the tunnel's own target, `api` and `admin` behind routes."""
    servers = {name: TargetServer(name).start() for name in ("root", "api", "admin")}
    yield servers
    for target in servers.values():
        target.stop()


def served_by(port: int, path: str) -> str | None:
    """Which local service answered a GET through the tunnel (None: the tunnel does not answer)."""
    try:
        reply = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except httpx.TransportError:
        return None
    if reply.status_code != 200:
        return f"status {reply.status_code}"
    body: dict[str, Any] = reply.json()
    return str(body["server"])


def cli_tunnels(server: DevServer) -> list[dict[str, Any]]:
    """`fleetlink tunnels ls --json`, as an operator runs it."""
    env = _env(FLEETLINK_URL=server.url, FLEETLINK_OPERATOR_TOKEN=server.operator_token)
    done = _fleetlink("tunnels", "ls", "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def test_a_self_hosted_tunnel_end_to_end(
    server: DevServer, operator: OperatorClient, targets: dict[str, TargetServer], tmp_path: Path
) -> None:
    # Given a registered agent whose self_hosted listener for "web" is on a known port, running
    port = free_port()
    home = tmp_path / "agent"
    home.mkdir()
    (home / "agent.toml").write_text(
        f"[tunnels]\nhealth_interval_s = 0.3\nbackoff_base_s = 0.2\n[tunnels.listen_ports]\nweb = {port}\n"
    )
    agent_id, env = register_tagged(server, operator, home, {"role": "tunnel"})
    # (registration created the agent's X25519 key, 0600, and registered its public half)
    assert operator.get_agent(agent_id).encryption_public_key
    assert (home / "encryption_key.pem").stat().st_mode & 0o777 == 0o600
    agent = launch_agent(agent_id, env)
    agents: list[AgentProcess] = [agent]
    try:
        # When the operator creates an http tunnel with two routes
        tunnel = operator.create_tunnel(
            agent_id,
            {
                "provider": "self_hosted",
                "name": "web",
                "mode": "http",
                "local_target": targets["root"].target,
                "routes": [
                    {"path_prefix": "/api", "local_target": targets["api"].target, "priority": 1},
                    {"path_prefix": "/api/admin", "local_target": targets["admin"].target},
                ],
            },
        )
        # Then the agent starts it after a heartbeat, and requests reach the longest prefix's service
        eventually(lambda: served_by(port, "/") == "root", "the tunnel to serve")
        assert served_by(port, "/api/users") == "api"
        assert served_by(port, "/api/admin/settings") == "admin"
        assert served_by(port, "/apix") == "root"
        # And the operator's `tunnels ls` shows it up, with its address
        eventually(
            lambda: (
                [(t["tunnel_id"], t["health"]) for t in cli_tunnels(server)] == [(tunnel.tunnel_id, "up")]
            ),
            "health up in `tunnels ls`",
        )
        assert operator.get_tunnel(tunnel.tunnel_id).public_url == f"http://127.0.0.1:{port}"

        # When one route's service stops
        targets["admin"].stop()
        # Then the tunnel turns degraded, saying why, with a health event
        eventually(lambda: operator.get_tunnel(tunnel.tunnel_id).health == "degraded", "health degraded")
        assert operator.get_tunnel(tunnel.tunnel_id).last_error_code == "target_unreachable"
        eventually(
            lambda: (
                "health_degraded" in {e.event_type for e in operator.tunnel_events(tunnel.tunnel_id).items}
            ),
            "a health_degraded event",
        )

        # When the agent is killed without a chance to clean up, then started again
        agent.process.send_signal(signal.SIGKILL)
        agent.stop()
        eventually(lambda: served_by(port, "/") is None, "the tunnel to die with its agent")
        agent = launch_agent(agent_id, env)
        agents.append(agent)
        # Then the tunnel comes back without the operator doing anything
        eventually(lambda: served_by(port, "/api/x") == "api", "the tunnel to come back")

        # When the operator disables it, it stops; enabled again, it serves again
        operator.patch_tunnel(tunnel.tunnel_id, {"enabled": False})
        eventually(lambda: served_by(port, "/") is None, "the disabled tunnel to stop")
        operator.patch_tunnel(tunnel.tunnel_id, {"enabled": True})
        eventually(lambda: served_by(port, "/") == "root", "the re-enabled tunnel to serve")

        # When the operator deletes it, it stops and the agent forgets it (its local view, offline)
        operator.delete_tunnel(tunnel.tunnel_id)
        eventually(lambda: served_by(port, "/") is None, "the deleted tunnel to stop")

        def local_tunnels() -> list[Any]:
            done = _fleetlink("agent", "tunnels", "--json", env=env)
            assert done.returncode == 0, done.stdout + done.stderr
            tunnels: list[Any] = json.loads(done.stdout)["tunnels"]
            return tunnels

        eventually(lambda: local_tunnels() == [], "the agent to forget the deleted tunnel")
    finally:
        for each in agents:
            if each.process.poll() is None:
                assert each.stop() == 0, each.output()
    assert all("Traceback" not in each.output() for each in agents), [a.output() for a in agents]
