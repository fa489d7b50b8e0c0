"""TunnelsService end to end on the node: desired state from a (fake) cloud API → the built-in
self_hosted provider serving real traffic → health, events and status reports back, with the
agent's real SQLite file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetlink.agent.db import db_path
from fleetlink.agent.tunnels.config import TunnelsConfig
from fleetlink.agent.tunnels.policy import AllowList
from fleetlink.agent.tunnels.service import TunnelsService
from fleetlink.agent.tunnels.store import TunnelStore
from fleetlink.contract.tunnels import DesiredTunnel, Health, Route
from fleetlink.core.ids import IdPrefix, new_id
from tests.fakes.tunnels import FakeTunnelApi
from tests.integration.tunnels.targets import WAIT_S, TargetServer

FAST = TunnelsConfig(health_interval_s=0.1, backoff_base_s=0.05, backoff_max_s=0.5)


def desired(name: str, target: str, routes: dict[str, str] | None = None, **changes: Any) -> DesiredTunnel:
    values: dict[str, Any] = {
        "tunnel_id": new_id(IdPrefix.TUNNEL),
        "agent_id": "agt_1",
        "provider": "self_hosted",
        "name": name,
        "mode": "http",
        "local_target": target,
        "enabled": True,
        "created_at": 1,
        "updated_at": 1,
        "routes": [
            Route(route_id=new_id(IdPrefix.ROUTE), path_prefix=p, local_target=t)
            for p, t in (routes or {}).items()
        ],
    }
    values.update(changes)
    return DesiredTunnel(**values)


def drive(service: TunnelsService, predicate: Callable[[], Any]) -> Any:
    """Run service rounds until the predicate holds (bounded)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        wait = service.step()
        if value := predicate():
            return value
        time.sleep(min(max(wait, 0.01), 0.1))
    raise AssertionError("condition not met in time")


@dataclass
class Node:
    api: FakeTunnelApi
    service: TunnelsService
    state_dir: Path

    def status(self, tunnel_id: str) -> Any:
        assert self.service.store is not None
        tunnel = self.service.store.tunnel(tunnel_id)
        return tunnel.status if tunnel else None

    def url(self, tunnel_id: str) -> str:
        return drive(
            self.service, lambda: (s := self.status(tunnel_id)) and s.health is Health.UP and s.public_url
        )


@pytest.fixture
def node(state_dir: Path) -> Iterator[Node]:
    api = FakeTunnelApi()
    service = TunnelsService(
        agent_id="agt_1",
        api=api,
        store=TunnelStore.open(db_path(state_dir)),
        state_dir=state_dir,
        config=FAST,
    )
    yield Node(api, service, state_dir)
    service.stop()


def test_a_two_route_tunnel_serves_by_longest_prefix_and_reports_up(
    node: Node, targets: dict[str, TargetServer]
) -> None:
    """Given a self_hosted tunnel to a with /api → b and /api/admin → c; when the agent starts it;
    then traffic reaches the right servers, and the cloud hears `up` and a tunnel_start event."""
    tunnel = desired(
        "web", targets["a"].target, {"/api": targets["b"].target, "/api/admin": targets["c"].target}
    )
    node.api.tunnels = [tunnel]
    node.service.start()
    url = node.url(tunnel.tunnel_id)
    served = [
        httpx.get(url + path, timeout=WAIT_S).json()["server"] for path in ("/", "/api/x", "/api/admin")
    ]
    assert served == ["a", "b", "c"]
    drive(
        node.service,
        lambda: any(r.health is Health.UP for t, r in node.api.statuses if t == tunnel.tunnel_id),
    )
    assert {"tunnel_start", "health_up"} <= set(node.api.event_types(tunnel.tunnel_id))


def test_a_stopped_target_turns_the_tunnel_degraded_then_down(
    node: Node, targets: dict[str, TargetServer]
) -> None:
    """Given an up tunnel with two targets; when one stops it is degraded, when both stop it is down,
    each with an event."""
    tunnel = desired("web", targets["a"].target, {"/api": targets["b"].target})
    node.api.tunnels = [tunnel]
    node.service.start()
    node.url(tunnel.tunnel_id)
    targets["b"].stop()
    drive(node.service, lambda: node.status(tunnel.tunnel_id).health is Health.DEGRADED)
    targets["a"].stop()
    status = drive(node.service, lambda: (s := node.status(tunnel.tunnel_id)).health is Health.DOWN and s)
    assert status.error_code == "target_unreachable"
    drive(
        node.service,
        lambda: {"health_degraded", "health_down"} <= set(node.api.event_types(tunnel.tunnel_id)),
    )


def test_disable_then_delete_stop_the_tunnel(node: Node, targets: dict[str, TargetServer]) -> None:
    """Given a running tunnel; when the cloud disables it the listener closes (tunnel_stop event),
    and when it is deleted the local row goes."""
    tunnel = desired("web", targets["a"].target)
    node.api.tunnels = [tunnel]
    node.service.start()
    url = node.url(tunnel.tunnel_id)
    node.api.tunnels = [tunnel.model_copy(update={"enabled": False})]
    node.api.version += 1
    node.service.on_heartbeat(node.api.ack())
    drive(node.service, lambda: "tunnel_stop" in node.api.event_types(tunnel.tunnel_id))
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=WAIT_S)
    node.api.tunnels = []
    node.api.version += 1
    node.service.on_heartbeat(node.api.ack())
    assert node.service.store is not None
    drive(node.service, lambda: node.service.store.tunnel(tunnel.tunnel_id) is None)  # type: ignore[union-attr]


def test_desired_state_is_fetched_only_when_the_version_changes(
    node: Node, targets: dict[str, TargetServer]
) -> None:
    """Given a started service; when heartbeats carry the same tunnels_version, nothing is fetched;
    when it changes, one fetch follows."""
    node.api.tunnels = [desired("web", targets["a"].target)]
    node.service.start()
    node.service.step()
    fetched = node.api.fetches
    for _ in range(3):
        node.service.on_heartbeat(node.api.ack())
        node.service.step()
    assert node.api.fetches == fetched
    node.api.version += 1
    node.service.on_heartbeat(node.api.ack())
    node.service.step()
    assert node.api.fetches == fetched + 1


def test_a_target_outside_the_allow_list_is_refused_with_an_error_event(node: Node) -> None:
    """Given the default loopback-only allow list; when the cloud asks to expose 10.0.0.5:22; then
    the agent does not start it and says why in an error event and a `down` status."""
    tunnel = desired("ssh", "10.0.0.5:22", mode="tcp")
    node.api.tunnels = [tunnel]
    node.service.start()
    status = drive(node.service, lambda: (s := node.status(tunnel.tunnel_id)).health is Health.DOWN and s)
    assert status.error_code == "target_not_allowed"
    assert "allow list" in (status.error_message or "")
    assert node.service.reconciler is not None
    assert node.service.reconciler.summary()["running"] == 0
    drive(node.service, lambda: "error" in node.api.event_types(tunnel.tunnel_id))


def test_an_allow_list_entry_lets_a_lan_target_through(
    state_dir: Path, targets: dict[str, TargetServer]
) -> None:
    """Given an allow list naming 127.0.0.2/32 only; when a tunnel points at 127.0.0.1; then it is refused."""
    config = TunnelsConfig(allow=AllowList.parse(["127.0.0.2/32"]), health_interval_s=0.1)
    api = FakeTunnelApi(tunnels=[desired("web", targets["a"].target)])
    service = TunnelsService(
        agent_id="agt_1",
        api=api,
        store=TunnelStore.open(db_path(state_dir)),
        state_dir=state_dir,
        config=config,
    )
    service.start()
    try:
        drive(service, lambda: "error" in api.event_types(api.tunnels[0].tunnel_id))
    finally:
        service.stop()


def test_outbox_keeps_everything_while_the_cloud_is_unreachable(
    node: Node, targets: dict[str, TargetServer]
) -> None:
    """Given a running tunnel and a cloud outage; when health changes meanwhile; then nothing is
    sent, nothing lost, and all of it is delivered once the cloud is back."""
    tunnel = desired("web", targets["a"].target)
    node.api.tunnels = [tunnel]
    node.service.start()
    node.url(tunnel.tunnel_id)
    node.service.step()
    assert node.service.store is not None
    sent_before = len(node.api.event_types(tunnel.tunnel_id))
    node.api.reachable = False
    targets["a"].stop()
    drive(node.service, lambda: node.status(tunnel.tunnel_id).health is Health.DOWN)
    owed = node.service.store.owed_events()
    assert owed
    assert node.service.store.outbox_size() >= len(owed)
    node.api.reachable = True
    drive(node.service, lambda: node.service.store.outbox_size() == 0)  # type: ignore[union-attr]
    delivered = node.api.event_types(tunnel.tunnel_id)[sent_before:]
    assert [e.event_type for e in owed] == delivered[: len(owed)]
    assert node.api.statuses[-1][1].health is Health.DOWN


def test_a_restarted_agent_brings_tunnels_back_without_the_cloud(
    state_dir: Path, targets: dict[str, TargetServer]
) -> None:
    """Given an agent that ran a tunnel and stopped; when a new agent starts on the same state dir
    with the cloud unreachable; then the tunnel serves again from the local store."""
    tunnel = desired("web", targets["a"].target)
    api = FakeTunnelApi(tunnels=[tunnel])
    first = TunnelsService(
        agent_id="agt_1",
        api=api,
        store=TunnelStore.open(db_path(state_dir)),
        state_dir=state_dir,
        config=FAST,
    )
    first.start()
    drive(
        first,
        lambda: first.store and (t := first.store.tunnel(tunnel.tunnel_id)) and t.status.health is Health.UP,
    )
    first.stop(urgent=True)
    api.reachable = False
    second = TunnelsService(
        agent_id="agt_1",
        api=api,
        store=TunnelStore.open(db_path(state_dir)),
        state_dir=state_dir,
        config=FAST,
    )
    second.start()
    try:
        url = drive(
            second,
            lambda: (
                (t := second.store.tunnel(tunnel.tunnel_id))
                and t.status.health is Health.UP  # type: ignore[union-attr]
                and t.status.public_url
            ),
        )
        assert httpx.get(url, timeout=WAIT_S).json()["server"] == "a"
    finally:
        second.stop()
