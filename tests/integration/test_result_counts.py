"""A result and its open count are one write: no fault leaves a final execution counted open."""

from __future__ import annotations

from typing import Any

import pytest

from fleetlink.local.faults import FaultPlan, inject_faults
from tests.conftest import TEST_TABLE
from tests.invariants import check_invariants
from tests.support import Api, Machine

SEED = 1


def _leased(api: Api, count: int) -> tuple[Machine, list[dict[str, Any]]]:
    """An agent holding the leases of ``count`` one-agent tasks."""
    machine = Machine("reporter")
    assert api.register(machine, api.mint_token()).status == 201
    for _ in range(count):
        body = {"type": "shell", "command": "true", "targets": {"agent_ids": [machine.agent_id]}}
        assert api.operator("tasks", "POST", "/v1/tasks", body).status == 201
    claim = f"/v1/agents/{machine.agent_id}/executions/claim"
    reply = api.signed("tasks", machine, "POST", claim, {"max": count, "running_executions": []})
    assert reply.status == 200, reply.body
    return machine, reply.json["executions"]


@pytest.mark.parametrize(
    "plan",
    [
        FaultPlan(per_operation={("throttle", "UpdateItem"): 1.0}, seed=SEED),
        FaultPlan(per_operation={("timeout", "TransactWriteItems"): 0.5}, timeout_applied=1.0, seed=SEED),
    ],
    ids=["throttled", "applied-then-timed-out"],
)
def test_results_under_update_faults_keep_open_counts_true(api: Api, plan: FaultPlan) -> None:
    # Given an agent holding leases of four tasks
    machine, leases = _leased(api, 4)
    # When it reports each while task updates are throttled, or results are applied and then time
    # out, and resends what was not a 200 once the store is calm (as the agent does)
    now = api.clock.now_ms()
    result = {"status": "succeeded", "exit_code": 0, "started_at": now, "finished_at": now}
    pending = [
        (f"/v1/executions/{lease['execution_id']}/result", result | {"attempt": lease["attempt"]})
        for lease in leases
    ]
    with inject_faults(plan) as injector:
        replies = [api.signed("tasks", machine, "POST", path, body) for path, body in pending]
    assert {reply.status for reply in replies} <= {200, 429, 503}, [r.body for r in replies]
    for (path, body), reply in zip(pending, replies, strict=True):
        if reply.status != 200:
            assert api.signed("tasks", machine, "POST", path, body).status == 200
    # Then every final execution is counted closed once and its task finished
    assert sum(injector.counts.values()) > 0
    assert check_invariants(TEST_TABLE) == []
