"""An operator's read right after its own write: a 201 is never followed by a 404, and a task's view
never shows it finished while an execution still reads running (the index it lists them from lags)."""

from __future__ import annotations

from fleetlink.local.faults import FaultPlan, inject_faults
from tests.support import Api, Machine

#: Every eventually consistent read answers the version before the last write (within a minute).
STALE = FaultPlan(stale=1.0, stale_window_ms=60_000, seed=2)


def test_a_task_read_right_after_its_create_is_found(api: Api) -> None:
    # Given an agent, and eventually consistent reads that lag
    machine = Machine("read-after-create")
    assert api.register(machine, api.mint_token()).status == 201
    body = {"type": "shell", "command": "true", "targets": {"agent_ids": [machine.agent_id]}}
    with inject_faults(STALE) as injector:
        # When tasks are created and each is read at once
        replies = []
        for _ in range(4):
            created = api.operator("tasks", "POST", "/v1/tasks", body)
            assert created.status == 201, created.body
            replies.append(api.operator("tasks", "GET", f"/v1/tasks/{created.json['task_id']}").status)
    # Then every read finds its task
    assert injector.counts
    assert replies == [200] * 4


def test_a_finished_task_never_shows_a_running_execution(api: Api) -> None:
    # Given a task claimed and started by its agent (the execution reads running in the index)
    machine = Machine("finished-view")
    assert api.register(machine, api.mint_token()).status == 201
    body = {"type": "shell", "command": "true", "targets": {"agent_ids": [machine.agent_id]}}
    task_id = api.operator("tasks", "POST", "/v1/tasks", body).json["task_id"]
    claim = f"/v1/agents/{machine.agent_id}/executions/claim"
    (lease,) = api.signed("tasks", machine, "POST", claim, {"max": 1, "running_executions": []}).json[
        "executions"
    ]
    assert api.heartbeat(machine, {"running_executions": [lease["execution_id"]]}).status == 200
    # When its result finishes the task and the task is read at once, while index reads lag
    now = api.clock.now_ms()
    result = {"attempt": 1, "status": "succeeded", "exit_code": 0, "started_at": now, "finished_at": now}
    with inject_faults(STALE) as injector:
        path = f"/v1/executions/{lease['execution_id']}/result"
        assert api.signed("tasks", machine, "POST", path, result).status == 200
        view = api.operator("tasks", "GET", f"/v1/tasks/{task_id}").json
    # Then the finished task shows its execution finished too
    assert injector.counts[("stale", "Query")] > 0
    assert view["state"] == "finished"
    assert [e["status"] for e in view["executions"]] == ["succeeded"]
