"""An agent's executions, newest first, paged: the console's agent page lists its real tasks from its
own index partition (gsi5), not from the fleet's most recent tasks."""

from __future__ import annotations

from typing import Any

import boto3

from fleetlink.core.clock import FixedClock
from tests.conftest import TEST_TABLE
from tests.support import Api, Machine


def run(api: Api, command: str, *agents: Machine) -> str:
    body = {"type": "shell", "command": command, "targets": {"agent_ids": [a.agent_id for a in agents]}}
    reply = api.operator("tasks", "POST", "/v1/tasks", body)
    assert reply.status == 201, reply.body
    task_id: str = reply.json["task_id"]
    return task_id


def executions(api: Api, agent: Machine, query: str = "") -> Any:
    return api.operator("tasks", "GET", f"/v1/agents/{agent.agent_id}/executions", query=query, role="viewer")


def test_an_agents_executions_page_newest_first_and_only_its_own(api: Api, clock: FixedClock) -> None:
    # Given two agents, and more tasks for one than a page holds, one for both, and the other's own
    token = api.mint_token(max_uses=2)
    mine, other = Machine("mine"), Machine("other")
    for machine in (mine, other):
        assert api.register(machine, token).status == 201
    sent = []
    for n in range(4):
        clock.advance(1000)
        sent.append(run(api, f"echo {n}", mine))
    clock.advance(1000)
    shared = run(api, "uptime", mine, other)
    theirs = run(api, "hostname", other)
    # When the agent's executions are read two at a time, following the cursor
    first = executions(api, mine, "limit=2")
    assert first.status == 200, first.body
    second = executions(api, mine, f"limit=2&cursor={first.json['cursor']}")
    third = executions(api, mine, f"limit=2&cursor={second.json['cursor']}")
    # Then they come newest first, each once, only its own, with what the page shows
    pages = [first.json, second.json, third.json]
    listed = [item["task_id"] for page in pages for item in page["items"]]
    assert listed == [shared, *reversed(sent)]
    assert third.json["cursor"] is None
    top = first.json["items"][0]
    assert (top["command"], top["status"], top["type"]) == ("uptime", "queued", "shell")
    assert [i["task_id"] for i in executions(api, other).json["items"]] == [theirs, shared]
    # And one agent's cursor is refused on another's list; an unknown agent has none
    refused = executions(api, other, f"cursor={first.json['cursor']}")
    assert (refused.status, refused.problem_code()) == (400, "invalid-cursor")
    unknown = api.operator("tasks", "GET", "/v1/agents/agt_" + "0" * 26 + "/executions")
    assert (unknown.status, unknown.json["items"]) == (200, [])


def test_the_index_holds_only_keys_and_the_task_id_so_transitions_do_not_rewrite_it(api: Api) -> None:
    # Given an execution claimed and finished (transitions after its creation)
    token = api.mint_token(max_uses=1)
    agent = Machine("busy")
    assert api.register(agent, token).status == 201
    task_id = run(api, "true", agent)
    claim = api.signed(
        "tasks",
        agent,
        "POST",
        f"/v1/agents/{agent.agent_id}/executions/claim",
        {"max": 1, "running_executions": []},
    )
    (lease,) = claim.json["executions"]
    # When the index is read as DynamoDB stores it
    index = boto3.client("dynamodb").describe_table(TableName=TEST_TABLE)["Table"]["GlobalSecondaryIndexes"]
    (gsi5,) = [i for i in index if i["IndexName"] == "gsi5"]
    # Then it projects only attributes that never change after creation
    assert gsi5["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["type", "task_id"]}
    (item,) = executions(api, agent).json["items"]
    assert (item["execution_id"], item["task_id"], item["status"]) == (
        lease["execution_id"],
        task_id,
        "leased",
    )
