"""Tunnels through the real handlers on moto: operators' routes, agents' routes, the heartbeat's
tunnels version, secrets sealed to the agent, liveness, events and the fleet views; hostile input."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from fleetlink.auth.sealing import (
    SealError,
    encryption_public_key_pem,
    generate_encryption_key,
    open_sealed,
)
from fleetlink.core.clock import FixedClock
from tests.support import Api, Machine, Reply

SECRET = "cf-tunnel-token-0123456789abcdefSECRET"
HTTP_TUNNEL: dict[str, Any] = {
    "provider": "self_hosted",
    "name": "web",
    "mode": "http",
    "local_target": "127.0.0.1:8080",
    "routes": [
        {"path_prefix": "/api", "local_target": "127.0.0.1:8081", "priority": 1},
        {"path_prefix": "/api/admin", "local_target": "127.0.0.1:8082"},
    ],
}


class Node(Machine):
    """A machine that registers an X25519 encryption key too."""

    encryption_key: x25519.X25519PrivateKey

    def __post_init__(self) -> None:
        super().__post_init__()
        self.encryption_key = generate_encryption_key()

    def register_body(self, **changes: Any) -> dict[str, Any]:
        pem = encryption_public_key_pem(self.encryption_key)
        return super().register_body(**({"encryption_public_key": pem} | changes))


@pytest.fixture
def nodes(api: Api) -> list[Node]:
    token = api.mint_token()
    found = [Node(f"node-{i}") for i in range(2)]
    for node in found:
        assert api.register(node, token).status == 201
    return found


@pytest.fixture
def node(nodes: list[Node]) -> Node:
    return nodes[0]


def create(api: Api, agent: Machine, **fields: Any) -> Reply:
    return api.operator("tunnels", "POST", f"/v1/agents/{agent.agent_id}/tunnels", HTTP_TUNNEL | fields)


def created(api: Api, agent: Machine, **fields: Any) -> dict[str, Any]:
    reply = create(api, agent, **fields)
    assert reply.status == 201, reply.body
    tunnel: dict[str, Any] = reply.json
    return tunnel


def desired(api: Api, agent: Machine) -> list[dict[str, Any]]:
    reply = api.signed("tunnels", agent, "GET", f"/v1/agents/{agent.agent_id}/tunnels")
    assert reply.status == 200, reply.body
    tunnels: list[dict[str, Any]] = reply.json["tunnels"]
    return tunnels


def status(api: Api, agent: Machine, tunnel_id: str, **body: Any) -> Reply:
    return api.signed("tunnels", agent, "PUT", f"/v1/tunnels/{tunnel_id}/status", body)


def tunnels_version(api: Api, agent: Machine) -> int:
    reply = api.heartbeat(agent)
    assert reply.status == 200, reply.body
    version: int = reply.json["tunnels_version"]
    return version


# --- operators ----------------------------------------------------------------------------------


def test_a_created_tunnel_reads_back_with_its_routes(api: Api, node: Node) -> None:
    # When an operator creates an http tunnel with two routes
    tunnel = created(api, node)
    # Then it reads back by id, enabled, health unknown, routes with ids, and no secret field at all
    got = api.operator("tunnels", "GET", f"/v1/tunnels/{tunnel['tunnel_id']}").json
    assert got == tunnel
    assert (got["enabled"], got["health"]) == (True, "unknown")
    assert [r["path_prefix"] for r in got["routes"]] == ["/api", "/api/admin"]
    assert all(r["route_id"].startswith("rte_") for r in got["routes"])
    assert "secret" not in got
    assert "sealed_secret" not in got


def test_the_same_provider_and_name_twice_is_a_409(api: Api, node: Node) -> None:
    created(api, node)
    reply = create(api, node)
    assert (reply.status, reply.problem_code()) == (409, "tunnel-name-taken")


def test_the_same_name_on_another_agent_or_provider_is_fine(api: Api, nodes: list[Node]) -> None:
    created(api, nodes[0])
    assert create(api, nodes[1]).status == 201
    assert create(api, nodes[0], provider="ngrok").status == 201


@pytest.mark.parametrize(
    ("fields", "status_code"),
    [
        ({"provider": "wireguard"}, 422),
        ({"provider": "cloudflare", "mode": "tcp", "routes": []}, 422),
        ({"routes": [{"path_prefix": "api", "local_target": "127.0.0.1:1"}]}, 422),
        ({"routes": [{"path_prefix": f"/r{i}", "local_target": "127.0.0.1:1"} for i in range(33)]}, 422),
        ({"local_target": "localhost"}, 422),
        ({"local_target": "127.0.0.1:99999"}, 422),
        ({"secret": "x" * 4097}, 422),
        ({"name": "Not A Name"}, 422),
        (
            {
                "routes": [
                    {"path_prefix": "/a", "local_target": "h:1"},
                    {"path_prefix": "/a/", "local_target": "h:2"},
                ]
            },
            422,
        ),
        ({"extra": 1}, 422),
    ],
    ids=[
        "unknown-provider",
        "mode-not-of-provider",
        "prefix-without-slash",
        "too-many-routes",
        "target-without-port",
        "target-port-out-of-range",
        "oversized-secret",
        "bad-name",
        "ambiguous-prefixes",
        "unknown-field",
    ],
)
def test_hostile_creates_are_4xx_problems(
    api: Api, node: Node, fields: dict[str, Any], status_code: int
) -> None:
    reply = create(api, node, **fields)
    assert reply.status == status_code, reply.body
    reply.problem()


def test_malformed_json_is_a_400_problem(api: Api, node: Node) -> None:
    reply = api.operator("tunnels", "POST", f"/v1/agents/{node.agent_id}/tunnels", b"{not json")
    assert (reply.status, reply.problem_code()) == (400, "malformed-json")


def test_a_tunnel_for_an_unknown_agent_is_a_404(api: Api) -> None:
    reply = api.operator("tunnels", "POST", "/v1/agents/agt_01J0000000000000000000000A/tunnels", HTTP_TUNNEL)
    assert (reply.status, reply.problem_code()) == (404, "agent-not-found")


def test_patch_replaces_routes_keeping_ids_and_emits_events(api: Api, node: Node) -> None:
    tunnel = created(api, node)
    api_route = tunnel["routes"][0]
    body = {"enabled": False, "routes": [{"path_prefix": "/api", "local_target": "127.0.0.1:9"}]}
    reply = api.operator("tunnels", "PATCH", f"/v1/tunnels/{tunnel['tunnel_id']}", body)
    assert reply.status == 200, reply.body
    assert reply.json["enabled"] is False
    assert [(r["route_id"], r["local_target"]) for r in reply.json["routes"]] == [
        (api_route["route_id"], "127.0.0.1:9")
    ]
    events = api.operator("tunnels", "GET", f"/v1/tunnels/{tunnel['tunnel_id']}/events").json["items"]
    assert {e["event_type"] for e in events} >= {"route_removed", "config_changed"}


def test_delete_removes_it_and_frees_the_name(api: Api, node: Node) -> None:
    tunnel = created(api, node)
    assert api.operator("tunnels", "DELETE", f"/v1/tunnels/{tunnel['tunnel_id']}").status == 204
    assert api.operator("tunnels", "GET", f"/v1/tunnels/{tunnel['tunnel_id']}").status == 404
    assert api.operator("tunnels", "DELETE", f"/v1/tunnels/{tunnel['tunnel_id']}").status == 404
    assert create(api, node).status == 201


# --- the heartbeat's tunnels version --------------------------------------------------------------


def test_every_desired_state_change_moves_the_tunnels_version(api: Api, node: Node) -> None:
    versions = [tunnels_version(api, node)]
    tunnel = created(api, node)
    versions.append(tunnels_version(api, node))
    api.operator("tunnels", "PATCH", f"/v1/tunnels/{tunnel['tunnel_id']}", {"enabled": False})
    versions.append(tunnels_version(api, node))
    api.operator("tunnels", "DELETE", f"/v1/tunnels/{tunnel['tunnel_id']}")
    versions.append(tunnels_version(api, node))
    assert versions == sorted(set(versions))
    assert len(versions) == 4


def test_a_status_report_or_a_no_op_patch_keeps_the_version(api: Api, node: Node) -> None:
    tunnel = created(api, node)
    before = tunnels_version(api, node)
    assert status(api, node, tunnel["tunnel_id"], health="up").status == 200
    api.operator("tunnels", "PATCH", f"/v1/tunnels/{tunnel['tunnel_id']}", {"enabled": True})
    assert tunnels_version(api, node) == before


# --- agents -------------------------------------------------------------------------------------


def test_an_agent_reads_only_its_own_desired_state(api: Api, nodes: list[Node]) -> None:
    tunnel = created(api, nodes[0])
    assert [t["tunnel_id"] for t in desired(api, nodes[0])] == [tunnel["tunnel_id"]]
    assert desired(api, nodes[1]) == []
    other = api.signed("tunnels", nodes[1], "GET", f"/v1/agents/{nodes[0].agent_id}/tunnels")
    assert (other.status, other.problem_code()) == (403, "not-your-resource")


def test_a_status_report_is_written_once_and_health_reads_up(api: Api, node: Node) -> None:
    tunnel = created(api, node)
    api.heartbeat(node)
    first = status(api, node, tunnel["tunnel_id"], health="up", public_url="http://127.0.0.1:9000")
    again = status(api, node, tunnel["tunnel_id"], health="up", public_url="http://127.0.0.1:9000")
    assert (first.json["changed"], again.json["changed"]) == (True, False)
    got = api.operator("tunnels", "GET", f"/v1/tunnels/{tunnel['tunnel_id']}").json
    assert (got["health"], got["public_url"]) == ("up", "http://127.0.0.1:9000")
    assert got["last_heartbeat_at"] == api.clock.now_ms()


def test_a_silent_agents_tunnel_reads_unknown(api: Api, node: Node, clock: FixedClock) -> None:
    tunnel = created(api, node)
    api.heartbeat(node)
    status(api, node, tunnel["tunnel_id"], health="up")
    clock.advance(10 * 60_000)
    got = api.operator("tunnels", "GET", f"/v1/tunnels/{tunnel['tunnel_id']}").json
    assert got["health"] == "unknown"


@pytest.mark.parametrize(
    "body",
    [{"health": "fine"}, {"health": "up", "public_url": "javascript:x"}, {"health": "up", "extra": 1}, {}],
    ids=["unknown-health-word", "bad-url", "unknown-field", "empty"],
)
def test_hostile_status_reports_are_422(api: Api, node: Node, body: dict[str, Any]) -> None:
    tunnel = created(api, node)
    reply = status(api, node, tunnel["tunnel_id"], **body)
    assert reply.status == 422, reply.body
    reply.problem()


def test_another_agents_tunnel_is_a_404_to_an_agent(api: Api, nodes: list[Node]) -> None:
    tunnel = created(api, nodes[0])
    reply = status(api, nodes[1], tunnel["tunnel_id"], health="down")
    assert (reply.status, reply.problem_code()) == (404, "tunnel-not-found")
    events = {"events": [{"level": "info", "event_type": "health_up", "message": "x", "created_at": 1}]}
    posted = api.signed("tunnels", nodes[1], "POST", f"/v1/tunnels/{tunnel['tunnel_id']}/events", events)
    assert posted.status == 404


def test_events_are_stored_once_newest_first_and_expire(api: Api, node: Node, clock: FixedClock) -> None:
    tunnel = created(api, node)
    now = clock.now_ms()
    batch = {
        "events": [
            {"level": "info", "event_type": "tunnel_start", "message": "started", "created_at": now + 1},
            {"level": "error", "event_type": "error", "message": "target down", "created_at": now + 2},
        ]
    }
    clock.advance(5)
    path = f"/v1/tunnels/{tunnel['tunnel_id']}/events"
    assert api.signed("tunnels", node, "POST", path, batch).json == {"accepted": 2}
    assert api.signed("tunnels", node, "POST", path, batch).status == 200  # a resend
    items = api.operator("tunnels", "GET", path).json["items"]
    assert [e["event_type"] for e in items] == ["error", "tunnel_start", "config_changed"]
    errors = api.operator("tunnels", "GET", "/v1/tunnels/events", query="errors=true").json["items"]
    assert [e["message"] for e in errors] == ["target down"]
    clock.advance(31 * 86_400_000)
    assert api.operator("tunnels", "GET", path).json["items"] == []


def test_fleet_events_are_answered_whole_from_the_shared_index(api: Api, node: Node) -> None:
    """gsi3 projects only what it lists of an item: a tunnel event's own fields must be among them."""
    # Given an event posted for a tunnel
    tunnel = created(api, node)
    event = {
        "level": "warn",
        "event_type": "restart",
        "message": "restarted",
        "created_at": api.clock.now_ms(),
    }
    path = f"/v1/tunnels/{tunnel['tunnel_id']}/events"
    assert api.signed("tunnels", node, "POST", path, {"events": [event]}).status == 200
    # When the fleet's recent events are read
    reply = api.operator("tunnels", "GET", "/v1/tunnels/events")
    # Then the event comes back with all its fields
    assert reply.status == 200, reply.body
    (found,) = [e for e in reply.json["items"] if e["event_type"] == "restart"]
    assert (found["level"], found["message"], found["tunnel_id"]) == (
        "warn",
        "restarted",
        tunnel["tunnel_id"],
    )


def test_more_than_100_events_are_refused(api: Api, node: Node) -> None:
    tunnel = created(api, node)
    one = {"level": "info", "event_type": "restart", "message": "r", "created_at": 1}
    reply = api.signed(
        "tunnels", node, "POST", f"/v1/tunnels/{tunnel['tunnel_id']}/events", {"events": [one] * 101}
    )
    assert reply.status == 422


# --- fleet views --------------------------------------------------------------------------------


def test_fleet_list_filters_and_health_summary(api: Api, nodes: list[Node]) -> None:
    a = created(api, nodes[0])
    created(api, nodes[1], provider="ngrok", name="api", routes=[])
    for n in nodes:
        api.heartbeat(n)
    status(api, nodes[0], a["tunnel_id"], health="up")
    every = api.operator("tunnels", "GET", "/v1/tunnels").json["items"]
    assert len(every) == 2
    up = api.operator("tunnels", "GET", "/v1/tunnels", query="health=up").json["items"]
    assert [t["tunnel_id"] for t in up] == [a["tunnel_id"]]
    ngrok = api.operator("tunnels", "GET", "/v1/tunnels", query="provider=ngrok").json["items"]
    assert [t["provider"] for t in ngrok] == ["ngrok"]
    mine = api.operator("tunnels", "GET", "/v1/tunnels", query=f"agent_id={nodes[0].agent_id}").json
    assert [t["tunnel_id"] for t in mine["items"]] == [a["tunnel_id"]]
    summary = api.operator("tunnels", "GET", "/v1/tunnels/health").json
    assert summary["total"] == 2
    assert summary["enabled"] == 2
    assert summary["by_health"] == {"up": 1, "down": 0, "degraded": 0, "unknown": 1}
    assert summary["by_provider"]["self_hosted"] == 1
    assert summary["by_provider"]["ngrok"] == 1
    rows = sorted((row["provider"], row["health"], row["count"]) for row in summary["counts"])
    assert rows == [("ngrok", "unknown", 1), ("self_hosted", "up", 1)]


def test_a_forged_fleet_events_cursor_is_a_400(api: Api, node: Node) -> None:
    reply = api.operator("tunnels", "GET", "/v1/tunnels/events", query="cursor=bm90LW91cnM")
    assert (reply.status, reply.problem_code()) == (400, "invalid-cursor")


# --- secrets ------------------------------------------------------------------------------------


def test_a_secret_is_sealed_to_the_agent_and_only_it_can_open_it(
    api: Api, nodes: list[Node], deps: Any
) -> None:
    # When an operator creates a tunnel with a secret
    reply = create(api, nodes[0], secret=SECRET)
    tunnel_id = reply.json["tunnel_id"]
    # Then no answer holds it, the agent's desired state holds it sealed, and it opens with its key
    (mine,) = desired(api, nodes[0])
    context = f"tunnel:{tunnel_id}".encode()
    assert open_sealed(nodes[0].encryption_key, mine["sealed_secret"], context=context) == SECRET.encode()
    # And another agent's key cannot open it, nor can it be opened for another tunnel
    with pytest.raises(SealError):
        open_sealed(nodes[1].encryption_key, mine["sealed_secret"], context=context)
    with pytest.raises(SealError):
        open_sealed(nodes[0].encryption_key, mine["sealed_secret"], context=b"tunnel:tun_other")
    answers = [
        reply.body,
        api.operator("tunnels", "GET", f"/v1/tunnels/{tunnel_id}").body,
        api.operator("tunnels", "GET", "/v1/tunnels").body,
    ]
    assert all(SECRET not in body and "sealed_secret" not in body for body in answers)


def test_no_plaintext_secret_in_the_table(api: Api, node: Node, deps: Any) -> None:
    import boto3

    tunnel = created(api, node, secret=SECRET)
    api.operator("tunnels", "PATCH", f"/v1/tunnels/{tunnel['tunnel_id']}", {"secret": SECRET + "2"})
    client = boto3.client("dynamodb", region_name="us-east-1")
    dump = str(client.scan(TableName=deps.settings.table_name)["Items"])  # a test's look at all items
    assert SECRET not in dump
    assert "fl1.hpke-x25519" in dump


def test_rotation_replaces_the_blob_and_emits_secret_rotated(api: Api, node: Node) -> None:
    tunnel = created(api, node, secret=SECRET)
    (before,) = desired(api, node)
    reply = api.operator(
        "tunnels", "PATCH", f"/v1/tunnels/{tunnel['tunnel_id']}", {"secret": "rotated-token"}
    )
    assert reply.status == 200
    assert "rotated-token" not in reply.body
    (after,) = desired(api, node)
    assert after["sealed_secret"] != before["sealed_secret"]
    context = f"tunnel:{tunnel['tunnel_id']}".encode()
    assert open_sealed(node.encryption_key, after["sealed_secret"], context=context) == b"rotated-token"
    events = api.operator("tunnels", "GET", f"/v1/tunnels/{tunnel['tunnel_id']}/events").json["items"]
    assert events[0]["event_type"] == "secret_rotated"


def test_a_secret_for_an_agent_without_an_encryption_key_is_a_409(api: Api) -> None:
    plain = Machine("plain")
    assert api.register(plain, api.mint_token()).status == 201
    reply = create(api, plain, secret=SECRET)
    assert (reply.status, reply.problem_code()) == (409, "agent-has-no-encryption-key")
    assert SECRET not in reply.body
    assert create(api, plain).status == 201  # without a secret it is fine


def test_no_secret_in_logs_or_problem_bodies(
    api: Api, nodes: list[Node], capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a secret sent in a create, a rotation, a refused duplicate and an oversized secret, with
    # every log record at DEBUG (botocore's request dumps too) and stdout/stderr captured
    caplog.set_level(logging.DEBUG)
    plain = Machine("no-key")
    assert api.register(plain, api.mint_token()).status == 201
    capfd.readouterr()
    tunnel = created(api, nodes[0], secret=SECRET)
    replies = [
        api.operator("tunnels", "PATCH", f"/v1/tunnels/{tunnel['tunnel_id']}", {"secret": SECRET}),
        create(api, nodes[0], secret=SECRET),
        create(api, plain, secret=SECRET),
        create(api, nodes[1], secret=SECRET * 200),
    ]
    # Then no answer and nothing logged holds it
    assert [r.status for r in replies] == [200, 409, 409, 422]
    logged = capfd.readouterr()
    assert SECRET not in logged.out + logged.err
    assert any("TransactWriteItems" in r.getMessage() for r in caplog.records)  # the writes were logged
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert all(SECRET not in reply.body for reply in replies)
