"""What operators see and do: list, read, revoke, tags."""

from __future__ import annotations

import pytest

from fleetlink.core.clock import FixedClock
from tests.support import Api, Machine


def _register(api: Api, count: int, **token: object) -> list[Machine]:
    token_value = api.mint_token(max_uses=count, **token)
    machines = [Machine(f"n{i}") for i in range(count)]
    for machine in machines:
        assert api.register(machine, token_value).status == 201
    return machines


def test_list_pages_through_every_agent_exactly_once(api: Api) -> None:
    # Given 23 agents
    machines = _register(api, 23)
    # When listed 5 at a time, following cursors
    seen, cursor, pages = [], None, 0
    while True:
        query = "limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = api.operator("operator", "GET", "/v1/agents", query=query).json
        seen += [item["agent_id"] for item in page["items"]]
        pages += 1
        cursor = page["cursor"]
        if not cursor:
            break
    # Then each agent appears once
    assert sorted(seen) == sorted(m.agent_id for m in machines)
    assert pages >= 5


def test_list_filters_by_tag(api: Api) -> None:
    web = _register(api, 3, tags={"role": "web"})
    _register(api, 2, tags={"role": "db"})
    page = api.operator("operator", "GET", "/v1/agents", query="tag=role:web").json
    assert sorted(i["agent_id"] for i in page["items"]) == sorted(m.agent_id for m in web)


def test_list_filters_by_liveness_and_state(api: Api, clock: FixedClock) -> None:
    # Given one agent that heartbeats, one silent, one revoked
    alive, silent, revoked = _register(api, 3)
    api.heartbeat(alive)
    api.operator("operator", "POST", f"/v1/agents/{revoked.agent_id}/revoke")

    def ids(status: str) -> set[str]:
        return {
            i["agent_id"]
            for i in api.operator("operator", "GET", "/v1/agents", query=f"status={status}").json["items"]
        }

    # Then each filter finds its own
    assert ids("online") == {alive.agent_id}
    assert ids("revoked") == {revoked.agent_id}
    assert silent.agent_id in ids("never_seen")


def test_replacing_tags_moves_the_agent_between_tag_lists(api: Api) -> None:
    (agent,) = _register(api, 1, tags={"role": "web"})
    reply = api.operator(
        "operator", "PUT", f"/v1/agents/{agent.agent_id}/tags", {"tags": {"role": "db", "zone": "a"}}
    )
    assert reply.status == 200
    assert reply.json["tags"] == {"role": "db", "zone": "a"}

    def tagged(tag: str) -> list[str]:
        return [
            i["agent_id"]
            for i in api.operator("operator", "GET", "/v1/agents", query=f"tag={tag}").json["items"]
        ]

    assert tagged("role:web") == []
    assert tagged("role:db") == [agent.agent_id]


def test_revoke_is_idempotent(api: Api) -> None:
    (agent,) = _register(api, 1)
    first = api.operator("operator", "POST", f"/v1/agents/{agent.agent_id}/revoke")
    second = api.operator("operator", "POST", f"/v1/agents/{agent.agent_id}/revoke")
    assert (first.status, second.status) == (200, 200)
    assert first.json["revoked_at"] == second.json["revoked_at"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/agents/{id}"), ("POST", "/v1/agents/{id}/revoke"), ("PUT", "/v1/agents/{id}/tags")],
)
def test_unknown_agent_is_a_404(api: Api, method: str, path: str) -> None:
    reply = api.operator("operator", method, path.format(id="agt_01J00000000000000000000000"), {"tags": {}})
    assert reply.status == 404
    assert reply.problem_code() == "agent-not-found"


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=abc",
        "status=sleeping",
        "tag=novalue",
        "cursor=%%%",
        "cursor=eyJzIjo5OSwiayI6bnVsbH0",
    ],
)
def test_bad_list_queries_are_4xx(api: Api, query: str) -> None:
    reply = api.operator("operator", "GET", "/v1/agents", query=query)
    assert reply.status in (400, 422), reply.body
    reply.problem()


def test_operator_routes_need_the_operator_token(api: Api) -> None:
    reply = api.call("operator", "GET", "/v1/agents")
    assert reply.status == 401
    assert reply.problem_code() == "operator-token-invalid"


def test_operator_actions_are_audited(api: Api, clock: FixedClock) -> None:
    # Given an agent
    (agent,) = _register(api, 1, tags={"env": "test"})
    # When an operator replaces its tags and, a moment later, revokes it
    api.operator("operator", "PUT", f"/v1/agents/{agent.agent_id}/tags", {"tags": {"a": "b"}})
    clock.advance(5)
    api.operator("operator", "POST", f"/v1/agents/{agent.agent_id}/revoke")
    # Then the agent's audit entries say so, newest first, by the admin token's name
    page = api.operator("operator", "GET", "/v1/audit", query=f"resource={agent.agent_id}").json
    assert [a["action"] for a in page["items"]] == ["agent.revoke", "agent.tags.replace"]
    assert {a["actor"] for a in page["items"]} == {"admin"}
    assert page["items"][1]["changes"] == {"tags": {"old": {"env": "test"}, "new": {"a": "b"}}}


def test_health_and_readiness_answer_without_auth(api: Api) -> None:
    assert api.call("operator", "GET", "/v1/health").json["status"] == "ok"
    assert api.call("operator", "GET", "/v1/health/ready").json["checks"] == {"table": "ok"}


def test_openapi_document_describes_every_route(api: Api) -> None:
    from fleetlink.api.document import route_table

    document = api.call("operator", "GET", "/v1/openapi.json").json
    assert document["openapi"].startswith("3.1")
    described = {(m.upper(), p) for p, methods in document["paths"].items() for m in methods}
    assert described == {(method, path) for _, method, path in route_table()}


def test_unknown_route_is_a_404_problem(api: Api) -> None:
    assert api.call("operator", "GET", "/v1/nothing-here").problem_code() == "no-such-route"
