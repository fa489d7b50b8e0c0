"""The local tunnel store on a real SQLite file: schema rules, outbox, views."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fleetlink.agent.db import now_ms
from fleetlink.agent.tunnels.store import RouteSpec, TunnelSpec, TunnelStatus, TunnelStore
from fleetlink.contract.tunnels import DesiredTunnel, EventLevel, EventType, Health, Mode, Provider
from fleetlink.core.ids import IdPrefix, new_id


def spec(name: str = "web", provider: Provider = Provider.SELF_HOSTED, **changes: object) -> TunnelSpec:
    values: dict[str, object] = {
        "tunnel_id": new_id(IdPrefix.TUNNEL),
        "provider": provider,
        "name": name,
        "mode": Mode.HTTP,
        "local_target": "127.0.0.1:8080",
        "routes": (RouteSpec("/api", "127.0.0.1:8081", 5), RouteSpec("/", "127.0.0.1:8080")),
    }
    values.update(changes)
    return TunnelSpec(**values)  # type: ignore[arg-type]


def test_spec_of_a_desired_tunnel_takes_its_config_and_routes() -> None:
    """Given a desired tunnel as the cloud answers it; when made a spec; then it holds the config and
    each route with its id, and nothing of the status or secret."""
    route_id = new_id(IdPrefix.ROUTE)
    desired = DesiredTunnel.model_validate(
        {
            "tunnel_id": new_id(IdPrefix.TUNNEL),
            "agent_id": new_id(IdPrefix.AGENT),
            "provider": "ngrok",
            "name": "web",
            "mode": "http",
            "local_target": "127.0.0.1:8080",
            "public_hostname": "app.example.com",
            "enabled": False,
            "health": "down",
            "routes": [{"route_id": route_id, "path_prefix": "/api", "local_target": "127.0.0.1:8081"}],
            "sealed_secret": "fl1.sealed-secret",
            "created_at": 1,
            "updated_at": 2,
        }
    )
    assert TunnelSpec.of(desired) == TunnelSpec(
        tunnel_id=desired.tunnel_id,
        provider=Provider.NGROK,
        name="web",
        mode=Mode.HTTP,
        local_target="127.0.0.1:8080",
        public_hostname="app.example.com",
        enabled=False,
        routes=(RouteSpec("/api", "127.0.0.1:8081", 0, True, route_id),),
    )


_EVENT = (
    "INSERT INTO network_events (event_id, level, event_type, message, data_json, created_at)"
    " VALUES ('e', {}, 0)"
)


def test_migration_sets_wal_and_records_the_version(tmp_path: Path) -> None:
    """Given a new agent.db; when the store opens it twice; then WAL is on and the tunnels
    component is at the last migration."""
    TunnelStore.open(tmp_path / "agent.db").close()
    store = TunnelStore.open(tmp_path / "agent.db")
    rows = store._query("SELECT version FROM schema_versions WHERE component = 'tunnels'")
    assert rows[0]["version"] == 1
    assert store._query("PRAGMA journal_mode")[0][0] == "wal"


def test_upsert_round_trips_a_tunnel_with_routes(store: TunnelStore) -> None:
    """Given a tunnel with two routes; when stored and read back; then it is the same spec."""
    tunnel = spec()
    assert store.upsert(tunnel) == (["/", "/api"], [])
    stored = store.tunnel(tunnel.tunnel_id)
    assert stored is not None
    assert stored.spec.config_hash == tunnel.config_hash
    assert {r.path_prefix for r in stored.spec.routes} == {"/", "/api"}
    assert stored.status.health is Health.UNKNOWN


def test_upsert_reports_routes_added_and_removed(store: TunnelStore) -> None:
    """Given a stored tunnel; when its routes change; then the added and removed prefixes are named."""
    tunnel = spec()
    store.upsert(tunnel)
    changed = TunnelSpec(
        **{
            **tunnel.__dict__,
            "routes": (RouteSpec("/api", "127.0.0.1:8081"), RouteSpec("/ws", "127.0.0.1:9")),
        }
    )
    assert store.upsert(changed) == (["/ws"], ["/"])


def test_provider_and_name_are_unique(store: TunnelStore) -> None:
    """Given a tunnel web on self_hosted; when another id claims the same provider and name; then refused."""
    store.upsert(spec("web"))
    with pytest.raises(sqlite3.IntegrityError):
        store.upsert(spec("web"))


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("UPDATE network_tunnels SET provider = ?", ("frp",)),
        ("UPDATE network_tunnels SET mode = ?", ("udp",)),
        ("UPDATE network_tunnels SET health_status = ?", ("great",)),
        ("UPDATE network_tunnels SET is_enabled = ?", (2,)),
        ("UPDATE network_routes SET path_prefix = ?", ("api",)),
        ("UPDATE network_routes SET priority = ?", (5000,)),
        (_EVENT.format("?, 'error', 'm', '{}'"), ("fatal",)),
        (_EVENT.format("'info', ?, 'm', '{}'"), ("boom",)),
        (_EVENT.format("'info', 'error', 'm', ?"), ("{not json",)),
    ],
)
def test_check_constraints_reject_bad_values(
    store: TunnelStore, sql: str, params: tuple[object, ...]
) -> None:
    """Given a stored tunnel; when a row gets a value outside its enum or shape; then SQLite refuses it."""
    store.upsert(spec())
    with pytest.raises(sqlite3.IntegrityError):
        store._db.execute(sql, params)


def test_secret_must_be_a_sealed_blob(store: TunnelStore) -> None:
    """Given a tunnel; when a plaintext token is stored as its secret; then the CHECK refuses it."""
    tunnel = spec(provider=Provider.NGROK)
    store.upsert(tunnel)
    with pytest.raises(sqlite3.IntegrityError):
        store.put_sealed_secret(tunnel.tunnel_id, "2abcPLAINTEXTtoken_xyz")
    assert store.put_sealed_secret(tunnel.tunnel_id, "fl1.rsa-oaep-256.AAAA") is True
    assert store.put_sealed_secret(tunnel.tunnel_id, "fl1.rsa-oaep-256.AAAA") is False


def test_delete_cascades_routes_and_secret_and_unlinks_events(store: TunnelStore) -> None:
    """Given a tunnel with routes, a secret and an event; when deleted; then routes and secret go,
    the event stays with no tunnel."""
    tunnel = spec(provider=Provider.NGROK)
    store.upsert(tunnel)
    store.put_sealed_secret(tunnel.tunnel_id, "fl1.x.AAAA")
    event = store.add_event(tunnel.tunnel_id, EventLevel.INFO, EventType.TUNNEL_START, "started")
    assert store.delete(tunnel.tunnel_id)
    assert store._query("SELECT count(*) FROM network_routes")[0][0] == 0
    assert store.sealed_secret(tunnel.tunnel_id) is None
    assert store.events()[0].event_id == event.event_id
    assert store.events()[0].tunnel_id is None


def test_status_change_is_owed_once_and_unchanged_status_is_not(store: TunnelStore) -> None:
    """Given a tunnel whose first status was sent; when the same status is recorded again nothing is
    owed; when it changes, one report is owed."""
    tunnel = spec()
    store.upsert(tunnel)
    [owed] = store.owed_statuses()
    store.mark_status_sent(tunnel.tunnel_id, owed.status_seq)
    assert store.set_status(tunnel.tunnel_id, TunnelStatus(Health.UP, "http://x:1")) is True
    [owed] = store.owed_statuses()
    store.mark_status_sent(tunnel.tunnel_id, owed.status_seq)
    assert store.set_status(tunnel.tunnel_id, TunnelStatus(Health.UP, "http://x:1")) is False
    assert store.owed_statuses() == []


def test_events_stay_owed_until_marked_sent(store: TunnelStore) -> None:
    """Given three events; when two are marked sent; then one is still owed."""
    tunnel = spec()
    store.upsert(tunnel)
    events = [
        store.add_event(tunnel.tunnel_id, EventLevel.INFO, EventType.HEALTH_UP, f"up {i}") for i in range(3)
    ]
    store.mark_events_sent([e.event_id for e in events[:2]])
    assert [e.event_id for e in store.owed_events()] == [events[2].event_id]


def test_views_answer_active_tunnels_summary_recent_events_and_errors(store: TunnelStore) -> None:
    """Given two enabled tunnels (one up, one down with errors) and one disabled; then each view
    answers what it is named for."""
    up, failing, off = spec("up"), spec("failing", provider=Provider.NGROK), spec("off", enabled=False)
    for tunnel in (up, failing, off):
        store.upsert(tunnel)
    store.set_status(up.tunnel_id, TunnelStatus(Health.UP, "http://up"))
    store.set_status(failing.tunnel_id, TunnelStatus(Health.DOWN, None, "auth_failed", "bad token"))
    old = now_ms() - 2 * 86_400_000
    store.add_event(failing.tunnel_id, EventLevel.ERROR, EventType.ERROR, "old failure", at=old)
    store.add_event(failing.tunnel_id, EventLevel.ERROR, EventType.ERROR, "bad token")
    store.add_event(failing.tunnel_id, EventLevel.ERROR, EventType.ERROR, "bad token again")
    store.add_event(up.tunnel_id, EventLevel.INFO, EventType.HEALTH_UP, "up")

    active = {row["name"]: row for row in store.view("v_active_tunnels")}
    assert set(active) == {"up", "failing"}
    assert active["up"]["route_count"] == 2
    summary = {
        (r["provider"], r["health_status"]): r["tunnel_count"] for r in store.view("v_tunnel_health_summary")
    }
    assert summary == {("self_hosted", "up"): 1, ("ngrok", "down"): 1, ("self_hosted", "unknown"): 1}
    recent = store.view("v_recent_network_events")
    assert [r["message"] for r in recent][:1] == ["up"]
    assert "old failure" not in {r["message"] for r in recent}
    [errors] = store.view("v_tunnel_errors_24h")
    assert (errors["tunnel_name"], errors["error_count"], errors["last_error_message"]) == (
        "failing",
        2,
        "bad token again",
    )
