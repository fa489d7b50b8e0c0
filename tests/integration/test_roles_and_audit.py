"""Operator roles (a request beyond its role is a 403 naming the role) and the audit log of every
operator write (who, what, which resource, when, from where, old → new; never a secret)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fleetlink.core.clock import FixedClock
from fleetlink.store.audit import DAYS_PER_PAGE
from tests.integration.test_tunnels_api import SECRET, Node, created
from tests.support import NOW_MS, Api, Machine

#: Where ``every_entry`` starts unless told: these tests write nothing before it, and without it
#: each walk to the end would read every day of the year's retention (4 queries a day).
WALK_FROM_MS = NOW_MS - 2 * 86_400_000

DAY_MS = 86_400_000


@pytest.fixture
def agent(api: Api) -> Node:
    node = Node("audited")
    assert api.register(node, api.mint_token()).status == 201
    return node


def audit(api: Api, query: str = "", role: str | None = None) -> dict[str, Any]:
    reply = api.operator("operator", "GET", "/v1/audit", query=query, role=role)
    assert reply.status == 200, reply.body
    page: dict[str, Any] = reply.json
    return page


def every_entry(api: Api, query: str = "", limit: int = 3) -> list[dict[str, Any]]:
    found, cursor = [], None
    if "since=" not in query:
        query = "&".join(filter(None, [query, f"since={WALK_FROM_MS}"]))
    for _ in range(200):
        page = audit(
            api, "&".join(filter(None, [query, f"limit={limit}", f"cursor={cursor}" if cursor else ""]))
        )
        found += page["items"]
        cursor = page["cursor"]
        if cursor is None:
            return found
    raise AssertionError("the cursor never ended")


# --- roles --------------------------------------------------------------------------------------


def test_a_viewer_reads_but_a_write_is_a_403_naming_the_role_it_needs(api: Api, agent: Machine) -> None:
    # Given the viewer's token
    # When it reads, then tries to tag an agent and to mint a token
    read = api.operator("operator", "GET", "/v1/agents", role="viewer")
    tag = api.operator("operator", "PUT", f"/v1/agents/{agent.agent_id}/tags", {"tags": {}}, role="viewer")
    mint = api.operator("registration", "POST", "/v1/registration-tokens", {"max_uses": 1}, role="viewer")
    # Then the read answers, and each write is a problem naming the role it needs
    assert read.status == 200
    assert (tag.status, tag.problem_code(), tag.json["required_role"]) == (403, "role-required", "operator")
    assert (mint.status, mint.json["required_role"]) == (403, "admin")
    assert "vera holds viewer" in tag.json["detail"]


def test_an_operator_runs_the_fleet_but_identity_and_policy_are_admins(api: Api, agent: Machine) -> None:
    # Given the operator role's token
    tags = api.operator(
        "operator", "PUT", f"/v1/agents/{agent.agent_id}/tags", {"tags": {"a": "b"}}, role="operator"
    )
    revoke = api.operator("operator", "POST", f"/v1/agents/{agent.agent_id}/revoke", role="operator")
    policy = api.operator("relay", "PUT", "/v1/relay/collections/inv", {"readers": "fleet"}, role="operator")
    # Then it tags, but revoking and read policies need admin
    assert tags.status == 200
    assert (revoke.status, revoke.json["required_role"]) == (403, "admin")
    assert (policy.status, policy.json["required_role"]) == (403, "admin")


def test_whoami_names_the_caller_its_role_and_each_routes_role(api: Api) -> None:
    me = api.operator("operator", "GET", "/v1/whoami", role="viewer").json
    assert (me["actor"], me["role"]) == ("vera", "viewer")
    assert me["routes"]["POST /v1/tasks"] == "operator"
    assert me["routes"]["POST /v1/registration-tokens"] == "admin"
    assert api.operator("operator", "GET", "/v1/whoami").json["role"] == "admin"


def test_each_role_probe_answers_its_role_and_up_and_refuses_below(api: Api) -> None:
    # Given the role probes (in AWS, what IAM lets through tells the console the role)
    def status(path: str, role: str | None) -> tuple[int, str | None]:
        reply = api.operator("operator", "GET", path, role=role)
        return reply.status, reply.json.get("role") if reply.status == 200 else reply.json["required_role"]

    # Then a probe answers the role it needs and above, and is a 403 naming it below
    assert status("/v1/whoami/operator", "viewer") == (403, "operator")
    assert status("/v1/whoami/operator", "operator") == (200, "operator")
    assert status("/v1/whoami/admin", "operator") == (403, "admin")
    assert status("/v1/whoami/admin", None) == (200, "admin")
    # And a refused probe (a read) leaves no audit entry
    assert every_entry(api, "action=request.refused") == []


def test_a_refused_write_changes_nothing_and_leaves_one_entry_marked_failed(api: Api, agent: Machine) -> None:
    # Given the viewer; When it tries to revoke an agent
    before = every_entry(api)
    api.operator("operator", "POST", f"/v1/agents/{agent.agent_id}/revoke", role="viewer")
    # Then the agent is untouched, and the log holds one more entry: the attempt, failed
    assert api.operator("operator", "GET", f"/v1/agents/{agent.agent_id}").json["state"] == "active"
    (refused,) = every_entry(api)[: len(every_entry(api)) - len(before)]
    assert (refused["actor"], refused["action"], refused["success"]) == ("vera", "request.refused", False)
    assert refused["target_id"] == agent.agent_id
    assert refused["details"] == {
        "method": "POST",
        "path": f"/v1/agents/{agent.agent_id}/revoke",
        "required_role": "admin",
    }
    assert refused["changes"] == {}


# --- the audit log ------------------------------------------------------------------------------


def test_each_kind_of_operator_write_leaves_one_entry_with_who_what_where_and_old_to_new(
    api: Api, agent: Node, clock: FixedClock
) -> None:
    # Given a fresh log (the fixture's token mint is one entry)
    writes: list[tuple[str, str, str, Any]] = [
        ("operator", "PUT", f"/v1/agents/{agent.agent_id}/tags", {"tags": {"team": "red"}}),
        (
            "tasks",
            "POST",
            "/v1/tasks",
            {"type": "shell", "command": "true", "targets": {"agent_ids": [agent.agent_id]}},
        ),
        ("relay", "PUT", "/v1/relay/collections/inventory", {"readers": {"tag": {"team": "red"}}}),
        ("registration", "POST", f"/v1/agents/{agent.agent_id}/recovery-token", None),
    ]
    before = len(every_entry(api))
    # When an operator makes each write (a tunnel created with a secret, patched, deleted too)
    for function, method, path, body in writes:
        clock.advance(1)
        reply = api.call(
            function,
            method,
            path,
            body=body,
            headers={"Authorization": "Bearer operator-test-token", "User-Agent": "fleetlink-test/1"},
        )
        assert reply.status in (200, 201), reply.body
    clock.advance(1)
    tunnel = created(api, agent, secret=SECRET)
    clock.advance(1)
    patched = api.operator("tunnels", "PATCH", f"/v1/tunnels/{tunnel['tunnel_id']}", {"enabled": False})
    clock.advance(1)
    task_id = audit(api, "action=task.create")["items"][0]["target_id"]
    cancelled = api.operator("tasks", "POST", f"/v1/tasks/{task_id}/cancel")
    clock.advance(1)
    deleted = api.operator("tunnels", "DELETE", f"/v1/tunnels/{tunnel['tunnel_id']}")
    assert (patched.status, cancelled.status, deleted.status) == (200, 200, 204)
    # Then each write left exactly one entry, newest first
    entries = every_entry(api)[: len(every_entry(api)) - before]
    assert [e["action"] for e in entries] == [
        "tunnel.delete",
        "task.cancel",
        "tunnel.patch",
        "tunnel.create",
        "recovery_token.create",
        "collection.readers.set",
        "task.create",
        "agent.tags.replace",
    ]
    # And each says who, from where, and what changed, old -> new
    by_action = {e["action"]: e for e in entries}
    assert {e["actor"] for e in entries} == {"admin"}
    assert by_action["agent.tags.replace"]["user_agent"] == "fleetlink-test/1"
    assert by_action["agent.tags.replace"]["source_ip"]
    assert by_action["tunnel.patch"]["changes"] == {"enabled": {"old": True, "new": False}}
    assert by_action["task.cancel"]["changes"] == {"state": {"old": "active", "new": "cancelled"}}
    assert by_action["collection.readers.set"]["changes"]["readers"] == {
        "old": "fleet",
        "new": {"team": "red"},
    }
    assert by_action["tunnel.delete"]["changes"]["name"] == {"old": "web", "new": None}
    assert all(e["success"] for e in entries)
    # And no secret is in any entry: the tunnel's secret, nor a token
    text = json.dumps(every_entry(api))
    assert SECRET not in text
    assert by_action["tunnel.create"]["changes"]["sealed_secret"]["new"] == "<redacted>"


def test_a_minted_token_is_never_in_its_entry(api: Api) -> None:
    token = api.mint_token(max_uses=2, tags={"env": "prod"})
    (entry,) = audit(api, "action=registration_token.create&limit=1")["items"]
    assert token not in json.dumps(entry)
    assert token.split(".")[-1] not in json.dumps(entry)
    assert entry["changes"]["max_uses"] == {"old": None, "new": 2}


def test_filters_by_actor_action_resource_and_time(api: Api, agent: Machine, clock: FixedClock) -> None:
    # Given writes by two operators at two times
    start = clock.now_ms()
    clock.advance(1000)
    api.operator(
        "operator", "PUT", f"/v1/agents/{agent.agent_id}/tags", {"tags": {"x": "1"}}, role="operator"
    )
    clock.advance(1000)
    middle = clock.now_ms()
    api.operator("operator", "PUT", f"/v1/agents/{agent.agent_id}/tags", {"tags": {"x": "2"}})
    # Then each filter finds its own
    assert [e["actor"] for e in every_entry(api, "actor=otto")] == ["otto"]
    assert len(every_entry(api, f"resource={agent.agent_id}")) == 2
    assert len(every_entry(api, "action=agent.tags.replace")) == 2
    assert [e["changes"]["tags"]["new"] for e in every_entry(api, f"since={middle}")] == [{"x": "2"}]
    assert [e["actor"] for e in every_entry(api, f"since={start + 1}&until={middle - 1}")] == ["otto"]


def test_pages_walk_every_day_newest_first_exactly_once(api: Api, agent: Machine, clock: FixedClock) -> None:
    # Given writes spread over more days than one page visits, several a day
    for day in range(DAYS_PER_PAGE + 3):
        for n in range(2 if day % 3 else 0):
            api.operator(
                "operator", "PUT", f"/v1/agents/{agent.agent_id}/tags", {"tags": {"d": f"{day}-{n}"}}
            )
            clock.advance(7)
        clock.advance(DAY_MS)
    # When read 3 at a time, following cursors
    entries = every_entry(api, "action=agent.tags.replace")
    # Then each appears once, newest first
    ids = [e["audit_id"] for e in entries]
    assert len(ids) == len(set(ids)) == sum(2 for d in range(DAYS_PER_PAGE + 3) if d % 3)
    assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "since=abc",
        "since=5",
        "until=99999999999999999",
        "since=1800000000000&until=1700000000000",
        "cursor=forged.cursor",
        "cursor=" + "x" * 3000,
        "actor=",
        "action=" + "a" * 65,
    ],
)
def test_bad_audit_queries_are_4xx_problems(api: Api, query: str) -> None:
    reply = api.operator("operator", "GET", "/v1/audit", query=query)
    assert reply.status in (400, 422), reply.body
    reply.problem()


def test_a_cursor_of_one_filter_is_refused_with_another(api: Api, agent: Machine) -> None:
    for n in range(3):
        api.operator("operator", "PUT", f"/v1/agents/{agent.agent_id}/tags", {"tags": {"n": str(n)}})
    cursor = audit(api, "limit=1&action=agent.tags.replace")["cursor"]
    reply = api.operator("operator", "GET", "/v1/audit", query=f"limit=1&action=token.revoke&cursor={cursor}")
    assert (reply.status, reply.problem_code()) == (400, "invalid-cursor")


def test_a_range_before_the_retention_is_an_empty_page(api: Api, agent: Machine) -> None:
    # Given a time range that ends years before anything could be kept
    page = audit(api, "since=946684800000&until=946684800001")
    # Then the answer is an empty page, not an error
    assert (page["items"], page["cursor"]) == ([], None)


def test_entries_expire_after_the_retention(api: Api, agent: Machine, clock: FixedClock) -> None:
    # Given an entry, and time moving past the retention (365 days)
    api.operator("operator", "PUT", f"/v1/agents/{agent.agent_id}/tags", {"tags": {"old": "yes"}})
    assert every_entry(api, f"resource={agent.agent_id}")
    clock.advance(366 * DAY_MS)
    # Then reads no longer show it (TTL deletes it later; reads check the TTL themselves)
    assert every_entry(api, f"resource={agent.agent_id}") == []
