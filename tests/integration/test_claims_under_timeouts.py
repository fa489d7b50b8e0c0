"""Claims, renewals and results while DynamoDB times out (often after applying the write) and drops
connections, at the rates that broke them before: ``timeout=0.15,connect=0.05``.

Agents follow the daemon's protocol: claim while work is pending, name what they run in every claim
and heartbeat, report each result until it is recorded, treat a 503 as "try again next round".
Nobody cancels anything, so an execution told to stop is a spurious cancellation, and one that ends
``timed_out`` had a claim its agent never received.
"""

from __future__ import annotations

from collections import Counter

import boto3

from fleetlink.api.deps import Deps
from fleetlink.api.functions import function_spec
from fleetlink.core.clock import FixedClock
from fleetlink.local.faults import FaultPlan, inject_faults
from tests.conftest import TEST_TABLE
from tests.invariants import check_invariants
from tests.support import Api, Machine

AGENTS = 3
TASKS = 6
ROUNDS = 12
PLAN = "timeout=0.15,connect=0.05,seed=2"


def test_timeouts_and_lost_connections_cancel_nothing_and_lose_no_claim(
    api: Api, deps: Deps, clock: FixedClock
) -> None:
    # Given three agents and six tasks for all of them (half under a concurrency limit)
    token = api.mint_token(max_uses=AGENTS)
    machines = [Machine(f"flaky-{n}") for n in range(AGENTS)]
    for machine in machines:
        assert api.register(machine, token).status == 201
    agent_ids = [m.agent_id for m in machines]
    for n in range(TASKS):
        limit = {"max_concurrency": 2} if n % 2 else {}
        body = {"type": "shell", "command": "true", "targets": {"agent_ids": agent_ids}, **limit}
        assert api.operator("tasks", "POST", "/v1/tasks", body).status == 201
    # per agent: executions running (each runs for one round), and results owed (made once: a
    # resend is the same request)
    running: dict[str, dict[str, dict[str, object]]] = {m.agent_id: {} for m in machines}
    owed: dict[str, dict[str, dict[str, object]]] = {m.agent_id: {} for m in machines}
    received: Counter[str] = Counter()
    stopped: list[str] = []
    statuses: Counter[int] = Counter()
    # When they beat, claim and report for a dozen rounds under timeouts and lost connections
    with inject_faults(FaultPlan.parse(PLAN)) as injector:
        for _ in range(ROUNDS):
            for machine in machines:
                held, results = running[machine.agent_id], owed[machine.agent_id]
                beat = api.heartbeat(machine, {"status": "ok", "running_executions": sorted(held)})
                statuses[beat.status] += 1
                if beat.status == 200:
                    stopped += beat.json["cancel"]
                results |= held  # what ran since the last round has finished
                held.clear()
                path = f"/v1/agents/{machine.agent_id}/executions/claim"
                reply = api.signed("tasks", machine, "POST", path, {"max": 2, "running_executions": []})
                statuses[reply.status] += 1
                if reply.status == 200:
                    stopped += reply.json["cancel"]
                    for lease in reply.json["executions"]:
                        received[lease["execution_id"]] += 1
                        if received[lease["execution_id"]] > 1:
                            continue  # handed back, but known: the daemon never runs an attempt twice
                        now = clock.now_ms()
                        result = {"attempt": lease["attempt"], "status": "succeeded", "exit_code": 0}
                        held[lease["execution_id"]] = result | {"started_at": now, "finished_at": now}
                for execution_id, result in sorted(results.items()):
                    path = f"/v1/executions/{execution_id}/result"
                    answer = api.signed("tasks", machine, "POST", path, result)
                    statuses[answer.status] += 1
                    if answer.status == 200:
                        del results[execution_id]
            clock.advance(5000)
    # ... and, faults over, time passes beyond every lease and the cleanup duties run
    clock.advance(15 * 60 * 1000)
    for duty in function_spec("cleanup").duties:
        duty.run(deps)
    executions = [
        e
        for t in api.operator("tasks", "GET", "/v1/tasks", query="limit=50").json["items"]
        for e in api.operator("tasks", "GET", f"/v1/tasks/{t['task_id']}").json["executions"]
    ]
    print(f"\n{PLAN}: statuses {dict(statuses)}\n{injector.summary()}")
    # Then nothing was told to stop, every execution was received and succeeded, and the table is sound
    assert (
        injector.counts[("timeout_applied", "UpdateItem")] + injector.counts[("timeout_applied", "PutItem")]
    )
    assert set(statuses) <= {200, 503}, statuses
    assert stopped == []
    assert Counter(e["status"] for e in executions) == {"succeeded": AGENTS * TASKS}
    assert len(received) == AGENTS * TASKS
    assert check_invariants(TEST_TABLE, boto3.client("dynamodb")) == []
