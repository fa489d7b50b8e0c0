"""Tasks through the real handlers on moto: fan-out, claim order, leases, results, cancel, timers."""

from __future__ import annotations

from typing import Any

import pytest

from fleetlink.api.deps import Deps
from fleetlink.api.functions import function_spec
from fleetlink.core.clock import FixedClock
from tests.support import Api, Machine, Reply

ECHO = {"type": "shell", "command": "echo hi"}


@pytest.fixture
def web(api: Api) -> list[Machine]:
    """Two registered agents tagged role=web."""
    token = api.mint_token(tags={"role": "web"})
    machines = [Machine(f"web-{i}") for i in range(2)]
    for machine in machines:
        assert api.register(machine, token).status == 201
    return machines


def create(api: Api, targets: dict[str, Any], **fields: Any) -> Reply:
    return api.operator("tasks", "POST", "/v1/tasks", {**ECHO, "targets": targets, **fields})


def claim(api: Api, agent: Machine, max_: int = 10, running: list[str] | None = None) -> dict[str, Any]:
    body = {"max": max_, "running_executions": running or []}
    reply = api.signed("tasks", agent, "POST", f"/v1/agents/{agent.agent_id}/executions/claim", body)
    assert reply.status == 200, reply.body
    claimed: dict[str, Any] = reply.json
    return claimed


def report(
    api: Api, agent: Machine, lease: dict[str, Any], status: str = "succeeded", **fields: Any
) -> Reply:
    now = api.clock.now_ms()
    body = {
        "attempt": lease["attempt"],
        "status": status,
        "exit_code": 0,
        "output": "hi\n",
        "started_at": now,
        "finished_at": now,
    }
    return api.signed("tasks", agent, "POST", f"/v1/executions/{lease['execution_id']}/result", body | fields)


def task(api: Api, task_id: str) -> dict[str, Any]:
    reply = api.operator("tasks", "GET", f"/v1/tasks/{task_id}")
    assert reply.status == 200, reply.body
    detail: dict[str, Any] = reply.json
    return detail


def run_duty(deps: Deps, name: str) -> int:
    return function_spec("cleanup").duty(name).run(deps)


def test_task_fans_out_to_every_agent_with_the_tags(api: Api, web: list[Machine]) -> None:
    # Given two web agents and a db agent
    other = Machine("db-1")
    api.register(other, api.mint_token(tags={"role": "db"}))
    # When a task targets role=web
    reply = create(api, {"tags": {"role": "web"}})
    # Then each web agent gets one queued execution, and the db agent none
    assert reply.status == 201, reply.body
    assert sorted(reply.json["agent_ids"]) == sorted(m.agent_id for m in web)
    detail = task(api, reply.json["task_id"])
    assert detail["counts"] == {"queued": 2}
    assert claim(api, other)["executions"] == []


def test_targets_by_id_and_tags_together_and_all_tags_must_match(api: Api, web: list[Machine]) -> None:
    api.operator(
        "operator", "PUT", f"/v1/agents/{web[0].agent_id}/tags", {"tags": {"role": "web", "zone": "a"}}
    )
    reply = create(api, {"tags": {"role": "web", "zone": "a"}})
    assert reply.json["agent_ids"] == [web[0].agent_id]
    both = create(api, {"agent_ids": [web[1].agent_id], "tags": {"zone": "a"}})
    assert sorted(both.json["agent_ids"]) == sorted(m.agent_id for m in web)


def test_revoked_agents_are_skipped_and_no_match_is_a_422(api: Api, web: list[Machine]) -> None:
    for machine in web:
        api.operator("operator", "POST", f"/v1/agents/{machine.agent_id}/revoke")
    reply = create(api, {"tags": {"role": "web"}})
    assert reply.status == 422
    assert reply.problem_code() == "no-targets"


def test_unknown_agent_id_is_a_404(api: Api, web: list[Machine]) -> None:
    reply = create(api, {"agent_ids": ["agt_01J00000000000000000000000"]})
    assert reply.status == 404


def test_claim_returns_highest_priority_first_then_oldest(
    api: Api, web: list[Machine], clock: FixedClock
) -> None:
    # Given tasks queued in this order: low, high-old, high-new, mid
    agent = web[0]
    ids = {}
    for name, priority in [("low", -5), ("high-old", 10), ("high-new", 10), ("mid", 0)]:
        ids[create(api, {"agent_ids": [agent.agent_id]}, priority=priority).json["task_id"]] = name
        clock.advance(1000)
    # When the agent claims them all
    leases = claim(api, agent)["executions"]
    # Then they come highest priority first, oldest first within a priority
    assert [ids[lease["task_id"]] for lease in leases] == ["high-old", "high-new", "mid", "low"]


def test_claim_hands_over_what_to_run_and_a_lease(api: Api, web: list[Machine]) -> None:
    create(api, {"agent_ids": [web[0].agent_id]}, command="uptime", timeout_seconds=30)
    (lease,) = claim(api, web[0])["executions"]
    assert (lease["type"], lease["command"], lease["attempt"], lease["timeout_seconds"]) == (
        "shell",
        "uptime",
        1,
        30,
    )
    assert lease["lease_expires_at"] > api.clock.now_ms()
    assert claim(api, web[0], running=[lease["execution_id"]])["executions"] == []


def test_a_lease_whose_answer_was_lost_is_handed_back_on_the_next_claim(
    api: Api, web: list[Machine], clock: FixedClock
) -> None:
    # Given a claim whose answer never reached the agent (it does not name the lease as running)
    create(api, {"agent_ids": [web[0].agent_id]}, command="uptime")
    (lost,) = claim(api, web[0])["executions"]
    clock.advance(3000)
    # When the agent heartbeats and claims again
    pending = api.heartbeat(web[0]).json["pending_executions"]
    (again,) = claim(api, web[0])["executions"]
    # Then the heartbeat says work is waiting, and the same execution comes back with a fresh lease
    assert pending == 1
    assert (again["execution_id"], again["attempt"]) == (lost["execution_id"], lost["attempt"])
    assert again["lease_expires_at"] > lost["lease_expires_at"]


def test_heartbeat_tells_the_agent_what_is_pending(api: Api, web: list[Machine]) -> None:
    assert api.heartbeat(web[0]).json["pending_executions"] == 0
    create(api, {"tags": {"role": "web"}})
    create(api, {"agent_ids": [web[0].agent_id]})
    assert api.heartbeat(web[0]).json["pending_executions"] == 2
    (lease,) = claim(api, web[0], max_=1)["executions"]
    # a lease the agent runs (its heartbeat names it) is no longer pending; one it never got still is
    assert api.heartbeat(web[0]).json["pending_executions"] == 2
    running = {"status": "ok", "running_executions": [lease["execution_id"]]}
    assert api.heartbeat(web[0], running).json["pending_executions"] == 1


def test_success_is_recorded_and_finishes_the_task(api: Api, web: list[Machine]) -> None:
    task_id = create(api, {"tags": {"role": "web"}}).json["task_id"]
    for machine in web:
        (lease,) = claim(api, machine)["executions"]
        reply = report(api, machine, lease, output="hello\n")
        assert reply.json["status"] == "succeeded"
    detail = task(api, task_id)
    assert detail["state"] == "finished"
    assert detail["counts"] == {"succeeded": 2}
    assert {e["output"] for e in detail["executions"]} == {"hello\n"}


def test_same_result_twice_is_accepted_once_and_a_different_one_is_a_409(
    api: Api, web: list[Machine]
) -> None:
    create(api, {"agent_ids": [web[0].agent_id]})
    (lease,) = claim(api, web[0])["executions"]
    first = report(api, web[0], lease, output="one")
    again = report(api, web[0], lease, output="one")
    different = report(api, web[0], lease, output="two")
    assert (first.status, again.status, different.status) == (200, 200, 409)
    assert again.json == first.json
    assert different.problem_code() == "attempt-not-running"


def test_failure_is_retried_with_the_next_attempt_until_retries_run_out(api: Api, web: list[Machine]) -> None:
    task_id = create(api, {"agent_ids": [web[0].agent_id]}, max_retries=1).json["task_id"]
    (first,) = claim(api, web[0])["executions"]
    assert report(api, web[0], first, "failed", exit_code=3).json["status"] == "queued"
    (second,) = claim(api, web[0])["executions"]
    assert second["attempt"] == 2
    assert report(api, web[0], second, "failed", exit_code=3).json["status"] == "failed"
    assert task(api, task_id)["executions"][0]["exit_code"] == 3


def test_expired_lease_requeues_with_attempt_plus_one_then_times_out(
    api: Api, web: list[Machine], deps: Deps, clock: FixedClock
) -> None:
    # Given a task with one retry, claimed by an agent that then goes silent
    task_id = create(api, {"agent_ids": [web[0].agent_id]}, max_retries=1).json["task_id"]
    claim(api, web[0])
    # When its lease runs out and the timer runs
    clock.advance(121_000)
    assert run_duty(deps, "lease-expiry") == 1
    # Then it is queued again as attempt 2
    (retry,) = claim(api, web[0])["executions"]
    assert retry["attempt"] == 2
    # And when that lease runs out too, it ends timed_out
    clock.advance(121_000)
    assert run_duty(deps, "lease-expiry") == 1
    execution = task(api, task_id)["executions"][0]
    assert (execution["status"], execution["attempt"]) == ("timed_out", 2)
    assert task(api, task_id)["state"] == "finished"


def test_heartbeat_renews_a_running_lease_so_the_timer_leaves_it(
    api: Api, web: list[Machine], deps: Deps, clock: FixedClock
) -> None:
    create(api, {"agent_ids": [web[0].agent_id]}, timeout_seconds=600)
    (lease,) = claim(api, web[0])["executions"]
    clock.advance(100_000)
    ack = api.heartbeat(web[0], {"running_executions": [lease["execution_id"]]}).json
    assert ack["renewed"] == [lease["execution_id"]]
    clock.advance(100_000)
    assert run_duty(deps, "lease-expiry") == 0
    assert report(api, web[0], lease).status == 200


def test_lease_is_never_renewed_past_the_timeout(
    api: Api, web: list[Machine], deps: Deps, clock: FixedClock
) -> None:
    # Given a 10 s task whose agent keeps heartbeating but never reports
    task_id = create(api, {"agent_ids": [web[0].agent_id]}, timeout_seconds=10).json["task_id"]
    (lease,) = claim(api, web[0])["executions"]
    for _ in range(3):
        clock.advance(30_000)
        api.heartbeat(web[0], {"running_executions": [lease["execution_id"]]})
    # When the timer runs past timeout + grace / Then the attempt timed out
    clock.advance(60_000)
    run_duty(deps, "lease-expiry")
    assert task(api, task_id)["executions"][0]["status"] == "timed_out"


def test_queued_execution_nobody_claims_expires(
    api: Api, web: list[Machine], deps: Deps, clock: FixedClock
) -> None:
    task_id = create(api, {"agent_ids": [web[0].agent_id]}, delivery_timeout_seconds=60).json["task_id"]
    clock.advance(61_000)
    assert run_duty(deps, "delivery-expiry") == 1
    assert task(api, task_id)["counts"] == {"expired": 1}
    assert claim(api, web[0])["executions"] == []


def test_cancel_ends_queued_executions_at_once(api: Api, web: list[Machine]) -> None:
    task_id = create(api, {"tags": {"role": "web"}}).json["task_id"]
    detail = api.operator("tasks", "POST", f"/v1/tasks/{task_id}/cancel").json
    assert (detail["state"], detail["counts"]) == ("cancelled", {"cancelled": 2})
    assert claim(api, web[0])["executions"] == []


def test_cancel_of_a_running_execution_reaches_the_agent_on_its_next_heartbeat(
    api: Api, web: list[Machine]
) -> None:
    # Given a running execution
    task_id = create(api, {"agent_ids": [web[0].agent_id]}).json["task_id"]
    (lease,) = claim(api, web[0])["executions"]
    # When the operator cancels
    api.operator("tasks", "POST", f"/v1/tasks/{task_id}/cancel")
    # Then the next heartbeat tells the agent to stop it, and what it reports is recorded cancelled
    ack = api.heartbeat(web[0], {"running_executions": [lease["execution_id"]]}).json
    assert (ack["cancel"], ack["renewed"]) == ([lease["execution_id"]], [])
    assert report(api, web[0], lease, "failed", error="killed").json["status"] == "cancelled"
    assert task(api, task_id)["counts"] == {"cancelled": 1}


def test_cancel_also_reaches_the_agent_through_a_claim(api: Api, web: list[Machine]) -> None:
    task_id = create(api, {"agent_ids": [web[0].agent_id]}).json["task_id"]
    (lease,) = claim(api, web[0])["executions"]
    api.operator("tasks", "POST", f"/v1/tasks/{task_id}/cancel")
    assert claim(api, web[0], running=[lease["execution_id"]])["cancel"] == [lease["execution_id"]]


def test_an_agent_cannot_claim_read_or_report_another_agents_executions(api: Api, web: list[Machine]) -> None:
    mine, theirs = web
    create(api, {"agent_ids": [theirs.agent_id]})
    path = f"/v1/agents/{theirs.agent_id}/executions/claim"
    assert api.signed("tasks", mine, "POST", path, {"max": 1}).status == 403
    (lease,) = claim(api, theirs)["executions"]
    assert api.signed("tasks", mine, "GET", f"/v1/executions/{lease['execution_id']}").status == 403
    assert report(api, mine, lease).status == 403
    assert api.signed("tasks", theirs, "GET", f"/v1/executions/{lease['execution_id']}").status == 200


def test_max_concurrency_limits_leases_across_agents(api: Api, web: list[Machine]) -> None:
    create(api, {"tags": {"role": "web"}}, max_concurrency=1)
    (lease,) = claim(api, web[0])["executions"]
    assert claim(api, web[1])["executions"] == []
    report(api, web[0], lease)
    assert len(claim(api, web[1])["executions"]) == 1


def test_large_output_is_kept_inline_up_to_the_limit_with_the_total_counted(
    api: Api, web: list[Machine]
) -> None:
    task_id = create(api, {"agent_ids": [web[0].agent_id]}).json["task_id"]
    (lease,) = claim(api, web[0])["executions"]
    report(api, web[0], lease, output="x" * 100_000)
    execution = task(api, task_id)["executions"][0]
    assert (len(execution["output"]), execution["output_truncated"], execution["output_bytes"]) == (
        16384,
        True,
        100_000,
    )


def test_ten_megabyte_result_is_a_413(api: Api, web: list[Machine]) -> None:
    create(api, {"agent_ids": [web[0].agent_id]})
    (lease,) = claim(api, web[0])["executions"]
    assert report(api, web[0], lease, output="x" * 10_000_000).status == 413


def test_unknown_task_type_is_accepted_for_the_agent_to_handle(api: Api, web: list[Machine]) -> None:
    reply = api.operator(
        "tasks",
        "POST",
        "/v1/tasks",
        {
            "type": "backup.snapshot",
            "input": {"volume": "/data"},
            "targets": {"agent_ids": [web[0].agent_id]},
        },
    )
    assert reply.status == 201
    (lease,) = claim(api, web[0])["executions"]
    assert (lease["type"], lease["input"], lease["command"]) == ("backup.snapshot", {"volume": "/data"}, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "shell", "command": "   "}, "body"),
        ({"type": "shell"}, "body"),
        ({"type": "shell", "command": "x", "timeout_seconds": -1}, "timeout_seconds"),
        ({"type": "shell", "command": "x", "priority": 5000}, "priority"),
        ({"type": "Bad Type!", "input": {}}, "type"),
        ({"type": "backup", "command": "rm -rf /"}, "body"),
        ({"type": "shell", "command": "x", "targets": {}}, "targets"),
        ({"type": "shell", "command": "x", "max_retries": 11}, "max_retries"),
        ({"type": "shell", "command": "x", "max_errors": 0}, "max_errors"),
        ({"type": "shell", "command": "x", "max_errors": "all"}, "max_errors"),
    ],
)
def test_hostile_task_bodies_get_field_errors(
    api: Api, web: list[Machine], body: dict[str, Any], field: str
) -> None:
    reply = api.operator("tasks", "POST", "/v1/tasks", {"targets": {"tags": {"role": "web"}}, **body})
    assert reply.status == 422, reply.body
    assert any(field in e["loc"] for e in reply.problem()["errors"])


@pytest.mark.parametrize(
    "body",
    [
        {"attempt": 0, "status": "succeeded", "started_at": 1, "finished_at": 2},
        {"attempt": 1, "status": "exploded", "started_at": 1, "finished_at": 2},
        {"attempt": 1, "status": "succeeded", "started_at": 5, "finished_at": 2},
        {"attempt": 1, "status": "succeeded"},
    ],
)
def test_hostile_results_get_field_errors(api: Api, web: list[Machine], body: dict[str, Any]) -> None:
    create(api, {"agent_ids": [web[0].agent_id]})
    (lease,) = claim(api, web[0])["executions"]
    reply = api.signed("tasks", web[0], "POST", f"/v1/executions/{lease['execution_id']}/result", body)
    assert reply.status == 422, reply.body


def test_unknown_task_and_execution_are_404s(api: Api, web: list[Machine]) -> None:
    assert api.operator("tasks", "GET", "/v1/tasks/tsk_01J00000000000000000000000").status == 404
    reply = api.signed("tasks", web[0], "GET", "/v1/executions/exe_01J00000000000000000000000")
    assert reply.status == 404


def test_tasks_list_newest_first_and_by_state(api: Api, web: list[Machine], clock: FixedClock) -> None:
    first = create(api, {"agent_ids": [web[0].agent_id]}).json["task_id"]
    clock.advance(1000)
    second = create(api, {"agent_ids": [web[0].agent_id]}).json["task_id"]
    api.operator("tasks", "POST", f"/v1/tasks/{first}/cancel")
    listed = api.operator("tasks", "GET", "/v1/tasks").json["items"]
    assert [t["task_id"] for t in listed] == [second, first]
    cancelled = api.operator("tasks", "GET", "/v1/tasks", query="state=cancelled").json["items"]
    assert [t["task_id"] for t in cancelled] == [first]


def test_the_task_list_counts_open_and_finished_executions_per_status(api: Api, web: list[Machine]) -> None:
    # Given a task on both web agents: one failed (exit 127), one still running
    created = create(api, {"tags": {"role": "web"}}).json
    first = claim(api, web[0])["executions"][0]
    claim(api, web[1])
    assert report(api, web[0], first, "failed", exit_code=127).status == 200
    # When the tasks are listed
    listed = api.operator("tasks", "GET", "/v1/tasks").json["items"]
    (item,) = [t for t in listed if t["task_id"] == created["task_id"]]
    # Then the task says one is open and one failed, without reading its executions
    assert item["open_executions"] == 1
    assert item["finished_executions"] == {"failed": 1}


def test_max_errors_cancels_the_queued_rest_once_the_budget_is_spent(api: Api, web: list[Machine]) -> None:
    # Given a task on both web agents with an error budget of one; web-0 claims, web-1 has not yet
    created = create(api, {"tags": {"role": "web"}}, max_errors=1).json
    lease = claim(api, web[0])["executions"][0]
    # When web-0's execution fails
    assert report(api, web[0], lease, "failed", exit_code=1).status == 200
    # Then web-1's queued execution is cancelled, not dispatched, saying why; the task is done
    detail = task(api, created["task_id"])
    assert detail["counts"] == {"failed": 1, "cancelled": 1}
    (skipped,) = [e for e in detail["executions"] if e["status"] == "cancelled"]
    assert "max_errors is 1" in skipped["error"]
    assert claim(api, web[1])["executions"] == []
    assert detail["state"] == "finished"


def test_max_errors_leaves_dispatch_alone_until_the_budget_is_spent(api: Api, web: list[Machine]) -> None:
    # Given a budget of two and one failure so far
    created = create(api, {"tags": {"role": "web"}}, max_errors=2).json
    lease = claim(api, web[0])["executions"][0]
    assert report(api, web[0], lease, "failed", exit_code=1).status == 200
    # Then the other execution is still handed out
    assert len(claim(api, web[1])["executions"]) == 1
    assert task(api, created["task_id"])["counts"] == {"failed": 1, "leased": 1}
