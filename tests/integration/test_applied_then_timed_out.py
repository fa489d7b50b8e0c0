"""Writes that DynamoDB applied but whose answer timed out: botocore's retry must not undo the caller.

botocore resends a write whose answer it never got; the resend meets the write's own effect. The
fault injector applies such writes before timing them out (``timeout_applied``) and serves
``TransactWriteItems`` retried with the same ``ClientRequestToken`` as DynamoDB does: once.
"""

from __future__ import annotations

from fleetlink.auth.sequence import sequence_nonce
from fleetlink.local.faults import FaultPlan, inject_faults
from tests.support import Api, Machine

SEED = 3
REQUESTS = 6


def test_a_nonce_written_then_timed_out_is_not_a_replay_for_its_own_request(api: Api) -> None:
    # Given a registered agent, and nonce writes that are applied and then time out half the time
    machine = Machine("timed-out")
    assert api.register(machine, api.mint_token()).status == 201
    plan = FaultPlan(per_operation={("timeout", "PutItem"): 0.5}, timeout_applied=1.0, seed=SEED)
    claim = f"/v1/agents/{machine.agent_id}/executions/claim"
    # When it claims a few times (each request signed with a fresh nonce)
    with inject_faults(plan) as injector:
        statuses = [
            api.signed("tasks", machine, "POST", claim, {"max": 1, "running_executions": []}).status
            for _ in range(REQUESTS)
        ]
    # Then botocore's resend of an applied nonce write finds its own write: no request is a 401
    assert injector.counts[("timeout_applied", "PutItem")] > 0
    assert set(statuses) <= {200, 503}, statuses
    assert 401 not in statuses


def test_a_replayed_request_is_still_refused_after_its_nonce_write_timed_out(api: Api) -> None:
    # Given a registered agent whose signed request's nonce write was applied, then timed out
    machine = Machine("replayed")
    assert api.register(machine, api.mint_token()).status == 201
    claim = f"/v1/agents/{machine.agent_id}/executions/claim"
    body = {"max": 1, "running_executions": []}
    raw = api.signed_headers(machine, "POST", claim, b'{"max": 1, "running_executions": []}')
    plan = FaultPlan(per_operation={("timeout", "PutItem"): 0.5}, timeout_applied=1.0, seed=SEED)
    with inject_faults(plan) as injector:
        first = api.call("tasks", "POST", claim, body=body, headers=raw)
    assert injector.counts[("timeout_applied", "PutItem")] >= 1
    # When the very same request (same signature, same nonce) is sent again
    again = api.call("tasks", "POST", claim, body=body, headers=raw)
    # Then the first was served and the copy is refused as a replay
    assert first.status == 200, first.body
    assert again.status == 401, again.body


def test_a_sequenced_heartbeat_written_then_timed_out_is_not_stale_for_its_own_request(api: Api) -> None:
    # Given a registered agent, and presence updates that are applied and then time out half the time
    machine = Machine("sequenced")
    assert api.register(machine, api.mint_token()).status == 201
    plan = FaultPlan(per_operation={("timeout", "UpdateItem"): 0.5}, timeout_applied=1.0, seed=SEED)
    # When it heartbeats with growing sequences (the sequence update is the replay check)
    with inject_faults(plan) as injector:
        statuses = [api.heartbeat(machine, nonce=sequence_nonce(n)).status for n in range(1, REQUESTS + 1)]
    # Then botocore's resend of an applied update finds its own write: no heartbeat is a 401
    assert injector.counts[("timeout_applied", "UpdateItem")] > 0
    assert set(statuses) <= {200, 503}, statuses


def test_a_registration_whose_transaction_was_applied_then_timed_out_registers_once(api: Api) -> None:
    # Given a token for two machines, and transactions applied and then timed out half the time
    token = api.mint_token(max_uses=REQUESTS)
    plan = FaultPlan(per_operation={("timeout", "TransactWriteItems"): 0.5}, timeout_applied=1.0, seed=SEED)
    # When machines register (botocore resends each transaction with its ClientRequestToken)
    with inject_faults(plan) as injector:
        statuses = [api.register(Machine(f"tx-{n}"), token).status for n in range(REQUESTS)]
    # Then DynamoDB's idempotent resend counts each registration once: all succeed, none is a 401/409
    assert injector.counts[("timeout_applied", "TransactWriteItems")] > 0
    assert set(statuses) <= {201, 503}, statuses


TASKS = 6
TUNNEL = {"provider": "self_hosted", "name": "web", "mode": "http", "local_target": "127.0.0.1:8080"}


def test_every_agent_transition_resent_after_an_applied_then_timed_out_write_succeeds_once(
    api: Api,
) -> None:
    # Given an agent with queued executions (half of them under a concurrency limit: transactions),
    # and a tunnel, and every execution write applied then timed out half the time
    machine = Machine("resent")
    assert api.register(machine, api.mint_token()).status == 201
    for n in range(TASKS):
        limit = {"max_concurrency": 1} if n % 2 else {}
        body = {"type": "shell", "command": "true", "targets": {"agent_ids": [machine.agent_id]}, **limit}
        assert api.operator("tasks", "POST", "/v1/tasks", body).status == 201
    tunnel = api.operator("tunnels", "POST", f"/v1/agents/{machine.agent_id}/tunnels", TUNNEL).json
    writes = ("PutItem", "UpdateItem", "TransactWriteItems")
    plan = FaultPlan(per_operation={("timeout", op): 0.5 for op in writes}, timeout_applied=1.0, seed=SEED)
    claim = f"/v1/agents/{machine.agent_id}/executions/claim"
    claimed: list[str] = []
    renewed: list[str] = []
    told_to_stop: list[str] = []
    results: list[int] = []
    statuses: list[int] = []
    # When it claims, starts (its heartbeat renews), reports, and reports its tunnel, one at a time
    with inject_faults(plan) as injector:
        for _ in range(4 * TASKS):
            reply = api.signed("tasks", machine, "POST", claim, {"max": 1, "running_executions": []})
            statuses.append(reply.status)
            if reply.status != 200 or not reply.json["executions"]:
                api.clock.advance(3000)  # a lease whose answer was lost comes back on a later claim
                continue
            (lease,) = reply.json["executions"]
            claimed.append(lease["execution_id"])
            for _ in range(3):  # the agent beats again at its next interval
                beat = api.heartbeat(machine, {"status": "ok", "running_executions": [lease["execution_id"]]})
                statuses.append(beat.status)
                if beat.status == 200:
                    renewed += beat.json["renewed"]
                    told_to_stop += beat.json["cancel"]
                    break
            now = api.clock.now_ms()
            result = {"attempt": lease["attempt"], "status": "succeeded", "exit_code": 0}
            result |= {"output": "ok\n", "started_at": now, "finished_at": now}
            path = f"/v1/executions/{lease['execution_id']}/result"
            for _ in range(3):  # the agent resends a result until it is recorded
                answer = api.signed("tasks", machine, "POST", path, result)
                statuses.append(answer.status)
                if answer.status == 200:
                    results.append(answer.status)
                    break
        for health in ("up", "degraded", "up"):
            path = f"/v1/tunnels/{tunnel['tunnel_id']}/status"
            statuses.append(api.signed("tunnels", machine, "PUT", path, {"health": health}).status)
    applied = {op: injector.counts[("timeout_applied", op)] for op in writes}
    # Then every resend found its own write: each execution was claimed once, renewed, never told
    # to stop, and succeeded; nothing failed but as a documented 503
    assert all(applied.values()), applied
    assert set(statuses) <= {200, 503}, statuses
    assert told_to_stop == []
    assert len(claimed) == TASKS == len(set(claimed)) == len(results)
    assert sorted(renewed) == sorted(claimed)
    tasks = api.operator("tasks", "GET", "/v1/tasks", query="limit=10").json["items"]
    assert sorted(t["state"] for t in tasks) == ["finished"] * TASKS
