"""Decisions that rest on a read use a consistent one: a stale read right after registration is no 404."""

from __future__ import annotations

from fleetlink.local.faults import FaultPlan, inject_faults
from tests.support import Api, Machine

#: Every eventually consistent read answers the version before the last write (within a minute).
STALE = FaultPlan(stale=1.0, stale_window_ms=60_000, seed=1)


def test_tags_replaced_right_after_registration_find_the_agent(api: Api) -> None:
    # Given eventually consistent reads that lag, and an agent registered a moment ago
    with inject_faults(STALE):
        machine = Machine("fresh-tags")
        assert api.register(machine, api.mint_token()).status == 201
        # When an operator replaces its tags at once
        reply = api.operator("operator", "PUT", f"/v1/agents/{machine.agent_id}/tags", {"tags": {"a": "b"}})
    # Then the update reads the agent consistently and succeeds
    assert reply.status == 200, reply.body


def test_a_task_aimed_at_a_just_registered_agent_is_created(api: Api) -> None:
    # Given eventually consistent reads that lag, and an agent registered a moment ago
    with inject_faults(STALE):
        machine = Machine("fresh-task")
        assert api.register(machine, api.mint_token()).status == 201
        # When a task names it
        body = {"type": "shell", "command": "true", "targets": {"agent_ids": [machine.agent_id]}}
        reply = api.operator("tasks", "POST", "/v1/tasks", body)
    # Then its targets are resolved consistently and the task is created
    assert reply.status == 201, reply.body


def test_a_just_registered_agent_can_be_revoked(api: Api) -> None:
    # Given eventually consistent reads that lag, and an agent registered a moment ago
    with inject_faults(STALE):
        machine = Machine("fresh-revoke")
        assert api.register(machine, api.mint_token()).status == 201
        # When an operator revokes it at once
        reply = api.operator("operator", "POST", f"/v1/agents/{machine.agent_id}/revoke")
    # Then the revocation finds it
    assert reply.status == 200, reply.body
