"""Decommissioning: a deleted agent is revoked and hidden, restorable until its retention ends, then
purged by the cleanup duty (every item it left, found by keys), while its executions stay."""

from __future__ import annotations

from typing import Any

import boto3

from fleetlink.api.deps import Deps
from fleetlink.core.clock import FixedClock
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.store import keys
from tests.conftest import TEST_TABLE
from tests.support import Api, Machine

TUNNEL = {"provider": "self_hosted", "name": "web", "mode": "http", "local_target": "127.0.0.1:8080"}


def _partition(pk: str) -> list[dict[str, Any]]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    answer = client.query(
        TableName=TEST_TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
        ConsistentRead=True,
    )
    return list(answer["Items"])


def _busy_agent(api: Api, clock: FixedClock) -> tuple[Machine, str, str]:
    """An agent with tags, presence, a tunnel with events, relay records and an execution."""
    token = api.mint_token(tags={"ring": "canary"})
    agent = Machine("doomed")
    assert api.register(agent, token).status == 201
    assert api.heartbeat(agent).status == 200
    tunnel = api.operator("tunnels", "POST", f"/v1/agents/{agent.agent_id}/tunnels", TUNNEL)
    assert tunnel.status == 201, tunnel.body
    tunnel_id = tunnel.json["tunnel_id"]
    now = clock.now_ms()
    event = {"level": "info", "event_type": "tunnel_start", "message": "started", "created_at": now}
    assert (
        api.signed("tunnels", agent, "POST", f"/v1/tunnels/{tunnel_id}/events", {"events": [event]}).status
        < 300
    )
    record = {
        "record_id": new_id(IdPrefix.RECORD),
        "collection": "inv",
        "key": "disk",
        "hlc": f"{now:013d}-0001",
    }
    assert (
        api.signed("relay", agent, "POST", "/v1/relay/immediate", record | {"value": {"gb": 1}}).status == 200
    )
    task = api.operator(
        "tasks",
        "POST",
        "/v1/tasks",
        {"type": "shell", "command": "true", "targets": {"agent_ids": [agent.agent_id]}},
    )
    assert task.status == 201, task.body
    return agent, tunnel_id, task.json["task_id"]


def _listed(api: Api, query: str = "") -> set[str]:
    return {
        item["agent_id"] for item in api.operator("operator", "GET", "/v1/agents", query=query).json["items"]
    }


def test_a_deleted_agent_is_revoked_hidden_and_restorable(api: Api, clock: FixedClock) -> None:
    # Given an agent with tags that heartbeats
    agent, _, _ = _busy_agent(api, clock)
    # When an operator deletes it
    deleted = api.operator("operator", "DELETE", f"/v1/agents/{agent.agent_id}")
    # Then it is revoked, hidden from the list and the tag's list, shown among deleted agents,
    # and its own signed calls are refused
    assert deleted.status == 200, deleted.body
    assert deleted.json["state"] == "revoked"
    assert deleted.json["deleted_at"] == clock.now_ms()
    assert agent.agent_id not in _listed(api) | _listed(api, "tag=ring:canary")
    shown = api.operator("operator", "GET", "/v1/deleted-agents").json["items"]
    assert [item["agent_id"] for item in shown] == [agent.agent_id]
    assert api.heartbeat(agent).status == 403
    # And deleting again changes nothing
    assert (
        api.operator("operator", "DELETE", f"/v1/agents/{agent.agent_id}").json["deleted_at"]
        == deleted.json["deleted_at"]
    )
    # When it is restored, Then it is active, listed and tagged again, and may heartbeat
    restored = api.operator("operator", "POST", f"/v1/agents/{agent.agent_id}/restore")
    assert restored.status == 200
    assert restored.json["state"] == "active"
    assert agent.agent_id in _listed(api, "tag=ring:canary")
    assert api.heartbeat(agent).status == 200
    # And restoring an agent that is not deleted is a conflict
    assert api.operator("operator", "POST", f"/v1/agents/{agent.agent_id}/restore").status == 409


def test_the_cleanup_duty_purges_every_item_after_the_retention_and_keeps_executions(
    api: Api, clock: FixedClock, deps: Deps
) -> None:
    # Given a busy agent, deleted
    agent, tunnel_id, task_id = _busy_agent(api, clock)
    assert agent.agent_id is not None
    assert api.operator("operator", "DELETE", f"/v1/agents/{agent.agent_id}").status == 200
    shard = keys.shard_of(agent.agent_id)
    doomed = {
        "agent": keys.agent_pk(agent.agent_id),
        "tunnel": keys.tunnel_pk(tunnel_id),
        "records": keys.relay_record_pk(agent.agent_id, "inv"),
        "evidence": keys.evidence_pk("fpr", agent.fingerprint),
        "machine": keys.evidence_pk("mid", agent.hardware()["machine_id"]),
    }
    assert all(_partition(pk) for pk in doomed.values())
    # When the duty runs before the retention ends, Then nothing is purged
    assert deps.decommission.purge_due() == 0
    # When the retention has passed and the duty runs
    clock.advance(deps.settings.deleted_agent_retention_days * 86_400_000 + 1)
    purged = deps.decommission.purge_due()
    # Then the profile, presence, tags, evidence, tunnel and its events, records and sync state are
    # gone (only the audit trail stays in the agent's partition), and the task still has its execution
    assert purged > 0
    left = {name: _partition(pk) for name, pk in doomed.items()}
    assert [item["sk"]["S"] for item in left.pop("agent")] == [
        item["sk"]["S"]
        for item in _partition(doomed["agent"])
        if item["sk"]["S"].startswith(keys.AUDIT_PREFIX)
    ]
    assert all(not items for items in left.values()), left
    assert not list(_partition(keys.tag_member_pk("ring", "canary", shard)))
    assert api.operator("operator", "GET", f"/v1/agents/{agent.agent_id}").status == 404
    task = api.operator("tasks", "GET", f"/v1/tasks/{task_id}").json
    assert [execution["agent_id"] for execution in task["executions"]] == [agent.agent_id]
    # And a second run finds nothing more to do
    assert deps.decommission.purge_due() == 0


def test_purge_now_refuses_an_agent_that_is_not_deleted(api: Api, clock: FixedClock) -> None:
    agent, _, _ = _busy_agent(api, clock)
    assert api.operator("operator", "POST", f"/v1/agents/{agent.agent_id}/purge").status == 409
    assert api.operator("operator", "DELETE", f"/v1/agents/{agent.agent_id}").status == 200
    purged = api.operator("operator", "POST", f"/v1/agents/{agent.agent_id}/purge")
    assert purged.status == 200
    assert purged.json["purged_items"] > 5


def test_an_agent_deregisters_itself_only(api: Api, clock: FixedClock) -> None:
    # Given two agents
    token = api.mint_token()
    one, other = Machine("one"), Machine("other")
    assert api.register(one, token).status == 201
    assert api.register(other, token).status == 201
    # When one signs the deregistration of the other, Then it is refused
    assert api.signed("operator", one, "POST", f"/v1/agents/{other.agent_id}/deregister").status == 403
    # When it deregisters itself, Then it is deleted (revoked, hidden)
    reply = api.signed("operator", one, "POST", f"/v1/agents/{one.agent_id}/deregister")
    assert reply.status == 200
    assert reply.json["deleted_at"] is not None
    assert one.agent_id not in _listed(api)
