"""Tasks under DynamoDB's real behaviour: lagging reads and indexes, partial batches, conflicts, retries.

moto is consistent and never partial; the fakes in tests/fakes make one read lag or one call fail
the way DynamoDB may, and each test checks the task still ends as it should.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

from fleetlink.api.deps import Deps
from fleetlink.core.clock import FixedClock
from fleetlink.core.tasks import service as task_service
from fleetlink.store import keys
from fleetlink.store.base import TableItem
from tests.conftest import TEST_TABLE
from tests.fakes.dynamo_errors import UNPROCESSED, ErrorPlan, dynamodb_errors
from tests.fakes.stale_reads import stale_reads
from tests.integration.test_tasks import claim, create, report, run_duty, task
from tests.support import Api, Machine, operator_headers

FLEET = {"tags": {"role": "fleet"}}


@pytest.fixture(autouse=True)
def unhurried_creates(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto copies the table on every transaction, so a create may outrun its time budget here;
    tests that want a create cut short set the budget to 0 themselves."""
    monkeypatch.setattr(task_service, "CREATE_FANOUT_BUDGET_S", 600.0)


def register_fleet(api: Api, size: int) -> list[Machine]:
    token = api.mint_token(tags={"role": "fleet"}, max_uses=size)
    machines = [Machine(f"fleet-{i}") for i in range(size)]
    for machine in machines:
        assert api.register(machine, token).status == 201
    return machines


def run_everything(api: Api, machines: list[Machine]) -> int:
    """Every agent claims and succeeds at all it has; how many executions ran."""
    ran = 0
    for machine in machines:
        for lease in claim(api, machine)["executions"]:
            assert report(api, machine, lease).status == 200
            ran += 1
    return ran


def table_client() -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


def create_with_key(api: Api, key: str, **fields: Any) -> Any:
    body = {"type": "shell", "command": "echo hi", "targets": FLEET} | fields
    headers = operator_headers() | {"Idempotency-Key": key}
    return api.call("tasks", "POST", "/v1/tasks", body=body, headers=headers)


# --- 1. the last open-count shard reads the others strongly consistently -------------------------


def test_task_finishes_when_its_last_executions_end_while_count_reads_lag(api: Api, deps: Deps) -> None:
    # Given a task on three agents, and eventually consistent reads of its counts that lag behind
    machines = register_fleet(api, 3)
    task_id = create(api, FLEET).json["task_id"]
    with stale_reads(table_client(), TEST_TABLE) as lagging:
        lagging.freeze([(keys.task_open_pk(task_id, shard), keys.SINGLETON_SK) for shard in range(8)])
        # When every execution succeeds (each closer reading the other count shards)
        assert run_everything(api, machines) == 3
    # Then the last closer saw the others at zero: the task is finished, with its end time
    detail = task(api, task_id)
    assert detail["state"] == "finished"
    assert detail["finished_at"] is not None


# --- 2. creation: idempotent, atomic, chunked for large fan-outs --------------------------------


def test_same_idempotency_key_and_body_create_one_task_and_answer_alike(api: Api) -> None:
    # Given two agents
    register_fleet(api, 2)
    # When the operator sends the same create twice under one key (a retry after a timeout)
    first = create_with_key(api, "retry-7f3a")
    second = create_with_key(api, "retry-7f3a")
    # Then one task exists and both answers name it
    assert first.status == second.status == 201, second.body
    assert first.json == second.json
    listed = api.operator("tasks", "GET", "/v1/tasks").json["items"]
    assert [t["task_id"] for t in listed] == [first.json["task_id"]]


def test_same_idempotency_key_with_another_body_is_a_422(api: Api) -> None:
    # Given a create under a key
    register_fleet(api, 1)
    assert create_with_key(api, "key-1").status == 201
    # When the key is reused for a different command
    reply = create_with_key(api, "key-1", command="rm -rf /tmp/x")
    # Then it is refused and nothing else is created
    assert reply.status == 422
    assert reply.problem_code() == "idempotency-key-reused"


def test_idempotency_key_is_per_operator_request_header_and_bounded(api: Api) -> None:
    # Given one agent
    register_fleet(api, 1)
    # When the key is too long or holds control characters
    reply = create_with_key(api, "k" * 256)
    # Then it is a 422 naming the header
    assert reply.status == 422, reply.body
    assert "idempotency-key" in reply.body.lower()


def test_large_fan_out_writes_every_execution_spread_over_task_shards(api: Api) -> None:
    # Given 60 agents (more than one transaction of executions)
    machines = register_fleet(api, 60)
    # When a task targets them all
    reply = create(api, FLEET)
    # Then every execution is written and listed, over eight gsi3 partitions
    assert reply.status == 201, reply.body
    detail = task(api, reply.json["task_id"])
    assert detail["counts"] == {"queued": 60}
    partitions = {
        keys.task_executions_keys(reply.json["task_id"], keys.task_shard(e["execution_id"], 60), "", "")[0]
        for e in detail["executions"]
    }
    assert len(partitions) == 8
    # And the task finishes once all ran
    assert run_everything(api, machines) == 60
    assert task(api, reply.json["task_id"])["state"] == "finished"


def test_fan_out_cut_short_is_finished_by_the_duty(
    api: Api, deps: Deps, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 30 agents and a create that has no time left to write executions
    machines = register_fleet(api, 30)
    monkeypatch.setattr(task_service, "CREATE_FANOUT_BUDGET_S", 0.0)
    reply = create(api, FLEET)
    assert reply.status == 201, reply.body
    task_id = reply.json["task_id"]
    assert task(api, task_id)["executions"] == []
    # When the fan-out duty runs (the create handed the fan-out over as it stopped)
    assert run_duty(deps, "fanout") == 1
    # Then every execution is there and the task finishes when they all ran
    assert task(api, task_id)["counts"] == {"queued": 30}
    assert run_everything(api, machines) == 30
    assert task(api, task_id)["state"] == "finished"


def test_task_with_some_executions_done_stays_active_while_its_fan_out_is_unfinished(
    api: Api, deps: Deps, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a 30-agent task whose create wrote only its first chunk (conflicts stopped the rest)
    machines = register_fleet(api, 30)
    plan = ErrorPlan(
        "TransactWriteItems",
        "TransactionCanceledException",
        times=100,
        reasons=["None", "TransactionConflict"],
    )
    calls = {"n": 0}

    def after_first_chunk(request: dict[str, Any]) -> bool:
        chunk = any("Delete" in action for action in request["TransactItems"])
        calls["n"] += chunk
        return chunk and calls["n"] > 1

    plan.matches = after_first_chunk
    with dynamodb_errors(plan):
        reply = create(api, FLEET)
    assert reply.status == 201, reply.body
    task_id = reply.json["task_id"]
    # When every written execution ran
    assert run_everything(api, machines) == 25
    # Then the task is still active: the unwritten chunk holds it open
    assert task(api, task_id)["state"] == "active"
    # And after the duty writes the rest and they run, it finishes
    assert run_duty(deps, "fanout") == 1
    assert run_everything(api, machines) == 5
    assert task(api, task_id)["state"] == "finished"


def test_unprocessed_batch_items_are_resent_not_a_500(api: Api) -> None:
    # Given 30 agents and DynamoDB leaving a create's batch unprocessed twice
    register_fleet(api, 30)
    plan = ErrorPlan("BatchWriteItem", UNPROCESSED, times=2)
    # When a task targets them
    with dynamodb_errors(plan):
        reply = create(api, FLEET)
    # Then the batch was resent and every execution written
    assert reply.status == 201, reply.body
    assert plan.served == 2
    assert task(api, reply.json["task_id"])["counts"] == {"queued": 30}


def test_batch_left_unprocessed_for_good_is_a_429_and_no_task_is_visible(api: Api) -> None:
    # Given DynamoDB never processing the create's batch
    register_fleet(api, 30)
    with dynamodb_errors(ErrorPlan("BatchWriteItem", UNPROCESSED, times=1000)):
        reply = create(api, FLEET)
    # Then the operator is told to retry, and no half-written task is listed
    assert reply.status == 429, reply.body
    assert "Retry-After" in reply.headers
    assert api.operator("tasks", "GET", "/v1/tasks").json["items"] == []


# --- 5. cancel: conditional, and checked again at claim -----------------------------------------


def test_execution_missing_from_the_lagging_index_is_not_run_after_a_cancel(
    api: Api, deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a task just created, whose executions the task index does not list yet
    (machine,) = register_fleet(api, 1)
    task_id = create(api, FLEET).json["task_id"]
    monkeypatch.setattr(type(deps.tasks), "executions_of", lambda self, task: [])
    # When the operator cancels it, then the agent claims
    assert api.operator("tasks", "POST", f"/v1/tasks/{task_id}/cancel").status == 200
    claimed = claim(api, machine)
    # Then nothing is handed out and the execution ends cancelled
    assert claimed["executions"] == []
    monkeypatch.undo()
    assert task(api, task_id)["counts"] == {"cancelled": 1}


def test_cancel_racing_the_last_result_keeps_the_finish_and_its_ttl(
    api: Api, deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a running one-agent task, read by a cancel just before its last result lands
    (machine,) = register_fleet(api, 1)
    task_id = create(api, FLEET).json["task_id"]
    (lease,) = claim(api, machine)["executions"]
    seen_by_cancel = deps.tasks.get_task(task_id)
    assert report(api, machine, lease).status == 200
    get_task = type(deps.tasks).get_task
    monkeypatch.setattr(
        type(deps.tasks),
        "get_task",
        lambda self, tid, consistent=False: (
            seen_by_cancel if not consistent else get_task(self, tid, consistent=True)
        ),
    )
    # When the cancel writes
    api.operator("tasks", "POST", f"/v1/tasks/{task_id}/cancel")
    monkeypatch.undo()
    # Then the task stays finished, with its end time and TTL
    stored = table_client().get_item(
        TableName=TEST_TABLE, Key={"pk": {"S": keys.task_pk(task_id)}, "sk": {"S": keys.SINGLETON_SK}}
    )["Item"]
    assert stored["state"]["S"] == "finished"
    assert "finished_at" in stored
    assert "ttl" in stored


# --- 9. renewals write only the lease; filtered lists read in real pages -----------------------


@contextmanager
def recorded_calls() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """The DynamoDB requests the models' client sends while inside the block."""
    client = TableItem._get_connection().connection.client
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, params))

    client.meta.events.register("provide-client-params.dynamodb", record, unique_id="test-recorded-calls")
    try:
        yield calls
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb", unique_id="test-recorded-calls")


def test_steady_lease_renewal_updates_only_the_lease_end_and_its_timer(api: Api, clock: FixedClock) -> None:
    # Given a running execution with a large command
    (machine,) = register_fleet(api, 1)
    create(api, FLEET, command="echo " + "x" * 4000)
    (lease,) = claim(api, machine)["executions"]
    running = [lease["execution_id"]]
    assert api.heartbeat(machine, {"running_executions": running}).json["renewed"] == running
    # When the next heartbeat renews it
    clock.advance(5_000)
    with recorded_calls() as calls:
        assert api.heartbeat(machine, {"running_executions": running}).json["renewed"] == running
    # Then the execution is not rewritten: one UpdateItem sets the lease end, the timer, the version
    # and the write's token (by which a resend after a lost answer knows its own write)
    writes = [
        (op, params)
        for op, params in calls
        if op in ("PutItem", "UpdateItem", "TransactWriteItems")
        and params.get("Key", params.get("Item", {})).get("pk", {}).get("S", "").startswith("EXE#")
    ]
    assert [op for op, _ in writes] == ["UpdateItem"]
    expression = writes[0][1]["UpdateExpression"]
    names = set(writes[0][1]["ExpressionAttributeNames"].values())
    assert names == {"lease_expires_at", "gsi4sk", "version", "write_token"}, expression


def test_state_filtered_task_list_reads_pages_not_one_item_per_query(api: Api) -> None:
    # Given one cancelled task behind thirty active ones
    register_fleet(api, 1)
    old = create(api, FLEET).json["task_id"]
    api.operator("tasks", "POST", f"/v1/tasks/{old}/cancel")
    for _ in range(30):
        create(api, FLEET)
    # When the operator lists cancelled tasks, one per page
    with recorded_calls() as calls:
        reply = api.operator("tasks", "GET", "/v1/tasks", query="state=cancelled&limit=1")
    # Then the match is found in one page read, not thirty one-item queries
    assert [t["task_id"] for t in reply.json["items"]] == [old]
    assert [op for op, _ in calls].count("Query") <= 2
