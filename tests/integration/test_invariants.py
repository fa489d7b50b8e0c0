"""The table invariant checker: silent on a table the handlers built, precise on a hand-broken one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from fleetlink.api.deps import Deps
from fleetlink.store import keys
from tests.invariants import check_invariants
from tests.support import Api, Machine


@dataclass
class Fleet:
    """Two agents registered on one two-use token; a max_concurrency=1 task for both, one execution leased."""

    api: Api
    table: str
    client: Any
    machines: list[Machine]
    token_id: str
    task_id: str
    leased: dict[str, Any]
    waiting: str

    def update(self, pk: str, expression: str, sk: str = keys.SINGLETON_SK, **values: Any) -> None:
        """A raw UpdateItem: ``#name`` placeholders name attributes, ``:name`` values."""
        names = {f"#{name}": name for name in values if f"#{name}" in expression}
        self.client.update_item(
            TableName=self.table,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            UpdateExpression=expression,
            ExpressionAttributeValues={f":{name}": _wire(value) for name, value in values.items()},
            **({"ExpressionAttributeNames": names} if names else {}),
        )

    def delete(self, pk: str, sk: str = keys.SINGLETON_SK) -> None:
        self.client.delete_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}})

    def set_status(self, execution_id: str, status: str) -> None:
        """The status, in or out of the queue index as the service would write it."""
        if status == "leased":
            expression, extra = "SET #status = :status, gsi2sk = :leased", {"leased": f"L#{execution_id}"}
        else:
            expression, extra = "SET #status = :status REMOVE gsi2pk, gsi2sk", {}
        self.update(keys.execution_pk(execution_id), expression, status=status, **extra)

    def open_pk(self, execution_id: str) -> str:
        return keys.task_open_pk(self.task_id, keys.task_shard(execution_id, len(self.machines)))

    def report(self, lease: dict[str, Any]) -> None:
        machine = next(m for m in self.machines if m.agent_id == lease["agent_id"])
        now = self.api.clock.now_ms()
        body = {"attempt": lease["attempt"], "status": "succeeded", "exit_code": 0, "output": "hi\n"}
        body |= {"started_at": now, "finished_at": now}
        path = f"/v1/executions/{lease['execution_id']}/result"
        assert self.api.signed("tasks", machine, "POST", path, body).status == 200

    def claim(self, machine: Machine) -> list[dict[str, Any]]:
        path = f"/v1/agents/{machine.agent_id}/executions/claim"
        reply = self.api.signed("tasks", machine, "POST", path, {"max": 1, "running_executions": []})
        assert reply.status == 200, reply.body
        return [{**lease, "agent_id": machine.agent_id} for lease in reply.json["executions"]]

    def violations(self) -> list[str]:
        return check_invariants(self.table, self.client)

    def put_attempt(self, execution_id: str, attempt: int) -> None:
        """The item of an ended attempt, as a transition would have written it."""
        expression = "SET #type = :type, execution_id = :execution_id, attempt = :attempt"
        values = {"type": "execution_attempt", "execution_id": execution_id, "attempt": attempt}
        self.update(keys.execution_pk(execution_id), expression, sk=keys.attempt_sk(attempt), **values)


def _wire(value: Any) -> dict[str, str]:
    return {"N": str(value)} if isinstance(value, int) else {"S": str(value)}


@pytest.fixture
def fleet(api: Api, deps: Deps) -> Fleet:
    token = api.mint_token(max_uses=2)
    machines = [Machine(f"node-{i}") for i in range(2)]
    for machine in machines:
        assert api.register(machine, token).status == 201
    body = {"type": "shell", "command": "echo hi", "max_concurrency": 1}
    body["targets"] = {"agent_ids": [m.agent_id for m in machines]}
    created = api.operator("tasks", "POST", "/v1/tasks", body)
    assert created.status == 201, created.body
    fleet = Fleet(
        api=api,
        table=deps.settings.table_name,
        client=boto3.client("dynamodb", region_name=deps.settings.region),
        machines=machines,
        token_id=token.split(".", 1)[0],
        task_id=created.json["task_id"],
        leased={},
        waiting="",
    )
    leases = [lease for machine in machines for lease in fleet.claim(machine)]
    assert len(leases) == 1  # one slot: the other agent waits
    fleet.leased = leases[0]
    detail = api.operator("tasks", "GET", f"/v1/tasks/{fleet.task_id}").json
    fleet.waiting = next(e["execution_id"] for e in detail["executions"] if e["status"] == "queued")
    return fleet


# --- a sound table ---------------------------------------------------------------------------------


def test_a_table_built_by_the_handlers_has_no_violation(fleet: Fleet) -> None:
    assert fleet.violations() == []


def test_a_task_run_to_the_end_has_no_violation(fleet: Fleet) -> None:
    # Given the leased execution reported, then the waiting one claimed and reported
    fleet.report(fleet.leased)
    waiting_agent = next(m for m in fleet.machines if m.agent_id != fleet.leased["agent_id"])
    fleet.report(fleet.claim(waiting_agent)[0])
    # Then the finished task breaks nothing
    assert fleet.api.operator("tasks", "GET", f"/v1/tasks/{fleet.task_id}").json["state"] == "finished"
    assert fleet.violations() == []


# --- a hand-broken table ---------------------------------------------------------------------------


def test_an_open_count_off_by_one(fleet: Fleet) -> None:
    fleet.update(fleet.open_pk(fleet.waiting), "ADD #open :open", open=-1)
    assert any(
        f"task {fleet.task_id}: open count" in v and "unfinished executions there" in v
        for v in fleet.violations()
    )


def test_an_active_task_whose_executions_are_all_final(fleet: Fleet) -> None:
    # Given both executions final (and their open counts, slot and attempt items brought along) but the
    # task still active
    for execution_id in (fleet.leased["execution_id"], fleet.waiting):
        fleet.set_status(execution_id, "succeeded")
        fleet.update(fleet.open_pk(execution_id), "ADD #open :open", open=-1)
        fleet.put_attempt(execution_id, 1)
    fleet.update(keys.task_pk(fleet.task_id), "SET active = :active", sk=keys.TASK_SLOTS_SK, active=0)
    # Then exactly the stuck task is reported
    assert fleet.violations() == [
        f"task {fleet.task_id}: active but all 2 executions are final",
        f"task {fleet.task_id}: all executions are final but finished_at is missing",
    ]


def test_a_finished_task_with_an_unfinished_execution(fleet: Fleet) -> None:
    fleet.update(
        keys.task_pk(fleet.task_id), "SET #state = :state, finished_at = :at", state="finished", at=1
    )
    assert fleet.violations() == [f"task {fleet.task_id}: finished with 2 unfinished executions"]


def test_a_finished_execution_left_in_the_queue_index(fleet: Fleet) -> None:
    # Given a leased execution made final without leaving its agent's queue partition
    execution_id = fleet.leased["execution_id"]
    fleet.update(keys.execution_pk(execution_id), "SET #status = :status", status="failed")
    # Then it is reported (a claim would find it)
    assert f"execution {execution_id}: failed but in the queue index as leased" in fleet.violations()


def test_executions_without_their_task(fleet: Fleet) -> None:
    fleet.delete(keys.task_pk(fleet.task_id))
    violations = fleet.violations()
    assert f"task {fleet.task_id}: 2 executions but no task item" in violations
    assert f"task {fleet.task_id}: open counts but no task item" in violations
    assert f"task {fleet.task_id}: a slots item but no task item" in violations


def test_an_execution_missing_from_its_task(fleet: Fleet) -> None:
    # Given a partial create: one execution never written, but its open count was
    fleet.delete(keys.execution_pk(fleet.waiting))
    violations = fleet.violations()
    assert f"task {fleet.task_id}: execution_count 2 but 1 executions" in violations
    # (the other execution may share the missing one's shard: the count there is one too many)
    shard = keys.task_shard(fleet.waiting, len(fleet.machines))
    assert any(f"in shard {shard} but" in v and "open count" in v for v in violations)


def test_slots_that_do_not_match_the_leased_executions(fleet: Fleet) -> None:
    fleet.update(keys.task_pk(fleet.task_id), "SET active = :active", sk=keys.TASK_SLOTS_SK, active=0)
    assert fleet.violations() == [f"task {fleet.task_id}: 0 slots taken but 1 executions hold a lease"]


def test_slots_over_the_limit(fleet: Fleet) -> None:
    fleet.set_status(fleet.waiting, "leased")
    fleet.update(keys.task_pk(fleet.task_id), "SET active = :active", sk=keys.TASK_SLOTS_SK, active=2)
    assert fleet.violations() == [f"task {fleet.task_id}: 2 slots taken of a limit of 1"]


def test_a_concurrency_task_without_its_slots_item(fleet: Fleet) -> None:
    fleet.delete(keys.task_pk(fleet.task_id), keys.TASK_SLOTS_SK)
    assert fleet.violations() == [f"task {fleet.task_id}: max_concurrency 1 but no slots item"]


def test_a_token_used_more_than_its_max_uses(fleet: Fleet) -> None:
    fleet.update(keys.token_pk(fleet.token_id), "SET uses = :uses", uses=3)
    assert fleet.violations() == [
        f"token {fleet.token_id}: used 3 times, more than its max_uses 2",
        f"token {fleet.token_id}: 3 uses counted but 2 registrations used it",
    ]


def test_a_token_use_without_its_registration(fleet: Fleet) -> None:
    fleet.update(keys.token_pk(fleet.token_id), "SET uses = :uses", uses=1)
    assert fleet.violations() == [f"token {fleet.token_id}: 1 uses counted but 2 registrations used it"]


def test_an_ended_attempt_without_its_item(fleet: Fleet) -> None:
    # Given the leased execution reported, then the item of its ended attempt lost
    fleet.report(fleet.leased)
    execution_id = fleet.leased["execution_id"]
    fleet.delete(keys.execution_pk(execution_id), keys.attempt_sk(1))
    # Then it is reported
    assert fleet.violations() == [
        f"execution {execution_id}: succeeded at attempt 1 but no item of attempts [1]"
    ]


def test_an_attempt_item_of_an_attempt_still_running(fleet: Fleet) -> None:
    execution_id = fleet.leased["execution_id"]
    fleet.put_attempt(execution_id, 1)
    assert fleet.violations() == [f"execution {execution_id}: leased at attempt 1 but items of attempts [1]"]


def test_output_chunks_with_a_gap(fleet: Fleet) -> None:
    # Given two chunks of the running attempt's output taken, then the first one lost
    machine = next(m for m in fleet.machines if m.agent_id == fleet.leased["agent_id"])
    execution_id = fleet.leased["execution_id"]
    for seq in (1, 2):
        chunk = {"attempt": 1, "seq": seq, "parts": [{"stream": "stdout", "data": f"{seq}\n"}]}
        path = f"/v1/executions/{execution_id}/output"
        assert fleet.api.signed("tasks", machine, "POST", path, chunk).status < 300
    assert fleet.violations() == []
    fleet.delete(keys.execution_pk(execution_id), keys.output_chunk_sk(1, 1))
    # Then the gap is reported
    assert fleet.violations() == [
        f"{keys.execution_pk(execution_id)} attempt 1: chunk head at 2 but chunks [2] (missing [1])"
    ]


def test_a_deleted_agent_left_in_the_agent_list_without_its_timer(fleet: Fleet) -> None:
    # Given an agent deleted (sound), then put back in the agent list and its purge timer lost
    agent_id = fleet.machines[1].agent_id
    assert fleet.api.operator("operator", "DELETE", f"/v1/agents/{agent_id}").status == 200
    assert fleet.violations() == []
    gsi1pk, _ = keys.agent_list_keys(agent_id)
    fleet.update(keys.agent_pk(agent_id), "SET gsi1pk = :gsi1pk", sk=keys.AGENT_PROFILE_SK, gsi1pk=gsi1pk)
    fleet.delete(keys.agent_pk(agent_id), keys.AGENT_PURGE_SK)
    # Then both are reported
    assert fleet.violations() == [
        f"agent {agent_id}: deleted but in the agent list ({gsi1pk})",
        f"agent {agent_id}: deleted but no purge timer",
    ]


def test_a_purge_cut_short_after_the_profile(fleet: Fleet) -> None:
    # Given a deleted agent whose profile is gone but not its presence nor its purge timer
    agent = fleet.machines[1]
    assert fleet.api.heartbeat(agent).status == 200
    assert fleet.api.operator("operator", "DELETE", f"/v1/agents/{agent.agent_id}").status == 200
    fleet.delete(keys.agent_pk(agent.agent_id), keys.AGENT_PROFILE_SK)
    # Then the leftovers are reported
    violations = fleet.violations()
    assert f"agent {agent.agent_id}: a purge timer but no profile" in violations
    assert f"agent {agent.agent_id}: a presence item left by a purge" in violations


# --- the audit log: a change without its entry, an entry without its change ------------------------


def _entries(fleet: Fleet, action: str, target: str) -> list[dict[str, Any]]:
    reply = fleet.api.operator("operator", "GET", "/v1/audit", query=f"resource={target}&action={action}")
    items: list[dict[str, Any]] = reply.json["items"]
    return items


def test_a_change_without_its_audit_entry(fleet: Fleet) -> None:
    # Given the task's create entry removed (as if the task had been written without it)
    (entry,) = _entries(fleet, "task.create", fleet.task_id)
    fleet.delete(*keys.audit_keys(entry["audit_id"], entry["at"]))
    # Then the task is reported as a change without its entry
    assert fleet.violations() == [f"task {fleet.task_id}: 0 task.create audit entries, expected 1"]


def test_an_audit_entry_without_its_change(fleet: Fleet) -> None:
    # Given the task marked cancelled, with no cancel entry, and a revoke entry about a token never revoked
    fleet.update(keys.task_pk(fleet.task_id), "SET cancelled_at = :at", at=1)
    (minted,) = _entries(fleet, "registration_token.create", fleet.token_id)
    pk, sk = keys.audit_keys("aud_01KBZZZZZZZZZZZZZZZZZZZZZZ", minted["at"])
    item = {"pk": pk, "sk": sk, "type": "audit", "audit_id": sk, "action": "token.revoke"}
    item |= {"target_id": fleet.token_id, "actor": "admin", "at": minted["at"], "changes": {}}
    fleet.client.put_item(
        TableName=fleet.table, Item={k: _wire(v) if k != "changes" else {"M": {}} for k, v in item.items()}
    )
    # Then both are reported
    assert fleet.violations() == [
        f"token {fleet.token_id}: 1 token.revoke audit entries, expected 0",
        f"task {fleet.task_id}: 0 task.cancel audit entries, expected 1",
    ]


def test_release_writes_without_their_entries_and_an_entry_without_its_release(fleet: Fleet) -> None:
    # Given a published release and a release key written without entries, and a publish entry
    # about a release that never was
    release = {"type": "release", "version": "9.9.9", "platform": "linux-x86_64", "status": "published"}
    release |= {"published_at": 1}
    fleet.client.put_item(
        TableName=fleet.table,
        Item={"pk": {"S": keys.RELEASES_PK}, "sk": {"S": keys.release_sk("linux-x86_64", "9.9.9")}}
        | {k: _wire(v) for k, v in release.items()},
    )
    key = {"type": "release_key", "key_id": "k1", "public_key": "pem", "updated_at": 1}
    fleet.client.put_item(
        TableName=fleet.table,
        Item={"pk": {"S": keys.RELEASE_KEY_PK}, "sk": {"S": keys.SINGLETON_SK}}
        | {k: _wire(v) for k, v in key.items()},
    )
    (minted,) = _entries(fleet, "registration_token.create", fleet.token_id)
    pk, sk = keys.audit_keys("aud_01KBZZZZZZZZZZZZZZZZZZZZZZ", minted["at"])
    entry = {"pk": pk, "sk": sk, "type": "audit", "audit_id": sk, "action": "release.publish"}
    entry |= {"target_id": "release/1.0.0/linux-x86_64", "actor": "admin", "at": minted["at"]}
    fleet.client.put_item(
        TableName=fleet.table, Item={k: _wire(v) for k, v in entry.items()} | {"changes": {"M": {}}}
    )
    # Then each is reported: the changes without their entries, the entry without its change
    assert fleet.violations() == [
        "release/9.9.9/linux-x86_64: 0 release.announce audit entries, expected 1",
        "release/9.9.9/linux-x86_64: 0 release.publish audit entries, expected 1",
        "release key k1: 0 set entries, the newest key entry None",
        "release.publish audit entry about release/1.0.0/linux-x86_64, which never was",
    ]


def test_an_execution_missing_from_its_agents_executions(fleet: Fleet) -> None:
    # Given the waiting execution written without its agent-executions keys
    fleet.client.update_item(
        TableName=fleet.table,
        Key={"pk": {"S": keys.execution_pk(fleet.waiting)}, "sk": {"S": keys.SINGLETON_SK}},
        UpdateExpression="REMOVE gsi5pk, gsi5sk",
    )
    # Then it is reported
    assert fleet.violations() == [f"execution {fleet.waiting}: not in its agent's executions ((None, None))"]
