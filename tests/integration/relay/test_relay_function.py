"""The relay function through its real handler on moto: the merge rule as conditional writes, per-record
answers, queries and their cursors, read policies, per-node sync state, and hostile input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fleetlink.api.deps import Deps
from fleetlink.core.clock import FixedClock
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.relay.merge import Outcome
from fleetlink.core.relay.ports import RecordQuery
from fleetlink.core.relay.records import MAX_VALUE_BYTES, TOMBSTONE_RETENTION_MS, make_record
from fleetlink.core.relay.service import RecordService
from fleetlink.local.faults import FaultInjector, FaultPlan
from fleetlink.store.base import table_client
from fleetlink.store.relay import DynamoRelayRepository
from tests.support import Api, Machine, Reply

FN = "relay"


def rec(
    key: str, hlc: str, value: Any = None, *, deleted: bool = False, collection: str = "inv", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "record_id": new_id(IdPrefix.RECORD),
        "collection": collection,
        "key": key,
        "hlc": hlc,
    }
    if deleted:
        body["deleted"] = True
    else:
        body["value"] = value
    return body | extra


def hlc(clock: FixedClock, counter: int = 0, ahead_ms: int = 0) -> str:
    return f"{clock.now_ms() + ahead_ms:013d}-{counter:04x}"


@pytest.fixture
def node(api: Api) -> Machine:
    machine = Machine("node-a")
    assert api.register(machine, api.mint_token(tags={"site": "paris"})).status == 201
    return machine


@pytest.fixture
def other(api: Api) -> Machine:
    machine = Machine("node-b")
    assert api.register(machine, api.mint_token(tags={"site": "lyon"})).status == 201
    return machine


def batch(api: Api, node: Machine, records: list[dict[str, Any]]) -> Reply:
    return api.signed(FN, node, "POST", "/v1/relay/batch", {"records": records})


def statuses(reply: Reply) -> list[str]:
    assert reply.status == 200, reply.body
    return [result["status"] for result in reply.json["results"]]


def query(api: Api, node: Machine, **body: Any) -> Reply:
    return api.signed(FN, node, "POST", "/v1/relay/query", body)


# --- writes ---------------------------------------------------------------------------------------


def test_a_higher_hlc_replaces_a_lower_equal_is_stale_and_a_resend_is_duplicate(
    api: Api, node: Machine, clock: FixedClock
) -> None:
    # Given a record applied
    first = rec("disk", hlc(clock, 1), {"gb": 1})
    assert statuses(batch(api, node, [first])) == ["applied"]
    # When it is resent, an older and an equal hlc arrive, and then a newer one
    older = rec("disk", hlc(clock, 0), {"gb": 0})
    equal = rec("disk", hlc(clock, 1), {"gb": 9})
    newer = rec("disk", hlc(clock, 2), {"gb": 2})
    # Then: duplicate, stale, stale, applied — and the cloud keeps the newest
    answers = statuses(batch(api, node, [first, older, equal, newer]))
    assert answers == ["duplicate", "stale", "stale", "applied"]
    records = query(api, node, collection="inv").json["records"]
    assert [(r["key"], r["value"], r["hlc"]) for r in records] == [("disk", {"gb": 2}, newer["hlc"])]


def test_immediate_answers_one_record(api: Api, node: Machine, clock: FixedClock) -> None:
    # Given one record / When sent through /relay/immediate twice
    record = rec("cpu", hlc(clock), 4)
    first = api.signed(FN, node, "POST", "/v1/relay/immediate", record)
    again = api.signed(FN, node, "POST", "/v1/relay/immediate", record)
    # Then it is applied, then a duplicate
    assert (first.json["status"], again.json["status"]) == ("applied", "duplicate")
    assert first.json["record_id"] == record["record_id"]


def test_a_tombstone_keeps_a_late_older_write_stale_and_expires_after_retention(
    api: Api, node: Machine, clock: FixedClock, deps: Any
) -> None:
    # Given a value and then its tombstone
    written = batch(api, node, [rec("k", hlc(clock, 1), 1), rec("k", hlc(clock, 3), deleted=True)])
    assert statuses(written) == ["applied", "applied"]
    # When a late older write arrives
    assert statuses(batch(api, node, [rec("k", hlc(clock, 2), 2)])) == ["stale"]
    # Then queries hide the tombstone unless asked, and show it with include_deleted
    assert query(api, node, collection="inv").json["records"] == []
    shown = query(api, node, collection="inv", include_deleted=True).json["records"]
    assert [(r["key"], r["deleted"], r["value"]) for r in shown] == [("k", True, None)]
    # When the retention passes (DynamoDB's TTL has not deleted it yet)
    clock.advance(TOMBSTONE_RETENTION_MS + 1000)
    # Then reads skip it
    assert query(api, node, collection="inv", include_deleted=True).json["records"] == []


def test_far_future_hlc_invalid_values_and_another_nodes_records_are_rejected_per_record(
    api: Api, node: Machine, other: Machine, clock: FixedClock
) -> None:
    # Given a batch mixing good records with hostile ones
    records = [
        rec("ok", hlc(clock), 1),
        rec("future", hlc(clock, ahead_ms=301_000), 1),
        rec("big", hlc(clock), "x" * MAX_VALUE_BYTES),
        rec("theirs", hlc(clock), 1, node_id=other.agent_id),
        rec("mine", hlc(clock), 1, node_id=node.agent_id),
    ]
    # When sent
    reply = batch(api, node, records)
    # Then each bad one is rejected with its reason, and the good ones applied
    results = reply.json["results"]
    assert [r["status"] for r in results] == ["applied", "rejected", "rejected", "rejected", "applied"]
    assert [r["error"].split(":")[0] for r in results if r["error"]] == [
        "hlc-ahead",
        "value-too-large",
        "not-your-record",
    ]
    assert {r["key"] for r in query(api, other, collection="inv").json["records"]} == {"ok", "mine"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"records": []}, 422),
        ({"records": "nope"}, 422),
        (b"{not json", 400),
    ],
)
def test_malformed_batches_are_4xx_problems(api: Api, node: Machine, body: Any, status: int) -> None:
    # Given a malformed batch / When sent / Then a problem, never a 500
    reply = api.signed(FN, node, "POST", "/v1/relay/batch", body)
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"] == "application/problem+json"


def test_hostile_record_shapes_fail_the_batch_with_422(api: Api, node: Machine, clock: FixedClock) -> None:
    # Given batches with 501 records, a malformed hlc, a bad collection or a bad key
    cases = [
        [rec(f"k{i}", hlc(clock), i) for i in range(501)],
        [rec("k", "1764512345678-1")],
        [rec("k", "not-an-hlc", 1)],
        [rec("k", hlc(clock), 1, collection="bad/name")],
        [rec("k", hlc(clock), 1, collection="x" * 65)],
        [rec("bad\nkey", hlc(clock), 1)],
        [rec("k" * 513, hlc(clock), 1)],
    ]
    for records in cases:
        # When sent / Then 422 validation-failed
        reply = batch(api, node, records)
        assert reply.status == 422, reply.body
        assert reply.problem_code() == "validation-failed"


def test_a_body_over_5_mib_is_413(api: Api, node: Machine, clock: FixedClock) -> None:
    # Given a body of more than 5 MiB / When sent / Then 413 before anything parses it
    body = json.dumps({"records": [rec("k", hlc(clock), "x" * (6 * 1024 * 1024))]}).encode()
    reply = api.signed(FN, node, "POST", "/v1/relay/batch", body)
    assert reply.status == 413
    assert reply.problem_code() == "payload-too-large"


# --- queries --------------------------------------------------------------------------------------


def test_queries_by_node_fleet_prefix_and_updated_since(
    api: Api, node: Machine, other: Machine, clock: FixedClock
) -> None:
    # Given two nodes' records, written at two times
    statuses(batch(api, node, [rec("disks/a", hlc(clock), 1), rec("net/a", hlc(clock), 2)]))
    statuses(batch(api, other, [rec("disks/b", hlc(clock), 3)]))
    since = clock.now_ms()
    clock.advance(1000)
    statuses(batch(api, other, [rec("net/b", hlc(clock), 4)]))

    def keys(**body: Any) -> set[tuple[str, str]]:
        records = query(api, node, collection="inv", **body).json["records"]
        return {(r["node_id"][-2:], r["key"]) for r in records}

    a, b = node.agent_id[-2:], other.agent_id[-2:]  # type: ignore[index]
    # When queried each way / Then each answer holds exactly the matching records
    assert keys(node_id=other.agent_id) == {(b, "disks/b"), (b, "net/b")}
    assert keys() == {(a, "disks/a"), (a, "net/a"), (b, "disks/b"), (b, "net/b")}
    assert keys(key_prefix="disks/") == {(a, "disks/a"), (b, "disks/b")}
    assert keys(node_id=node.agent_id, key_prefix="net/") == {(a, "net/a")}
    assert keys(updated_since=since) == {(b, "net/b")}
    assert keys(updated_since=since, node_id=other.agent_id) == {(b, "net/b")}
    assert keys(updated_since=since, key_prefix="disks/") == set()


def test_pages_follow_the_cursor_to_the_end(api: Api, node: Machine, clock: FixedClock) -> None:
    # Given 25 records
    statuses(batch(api, node, [rec(f"k{i:02d}", hlc(clock), i) for i in range(25)]))
    # When read 10 at a time, following the cursor
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        body: dict[str, Any] = {"collection": "inv", "limit": 10} | ({"cursor": cursor} if cursor else {})
        answer = query(api, node, **body).json
        seen += [r["key"] for r in answer["records"]]
        cursor = answer["cursor"]
        if cursor is None:
            break
    # Then every record comes once
    assert sorted(seen) == [f"k{i:02d}" for i in range(25)]


def test_a_forged_or_reused_cursor_is_400(api: Api, node: Machine, clock: FixedClock) -> None:
    # Given a real cursor
    statuses(batch(api, node, [rec(f"k{i}", hlc(clock), i) for i in range(3)]))
    cursor = query(api, node, collection="inv", limit=1).json["cursor"]
    payload, _, tag = cursor.partition(".")
    forged = [
        "eyJzIjowLCJrIjpudWxsfQ",  # an unsigned position
        f"{payload}.{tag[:-2]}AA",  # a changed tag
        f"eyJzIjo3LCJrIjpudWxsfQ.{tag}",  # another position under the same tag
    ]
    for bad in forged:
        # When queried with a forged cursor / Then 400 invalid-cursor
        reply = query(api, node, collection="inv", limit=1, cursor=bad)
        assert reply.status == 400, reply.body
        assert reply.problem_code() == "invalid-cursor"
    # And a real cursor reused for another filter is refused too
    assert query(api, node, collection="inv", key_prefix="k", cursor=cursor).status == 400


# --- read policies and sync state ------------------------------------------------------------------


def test_a_collection_restricted_to_a_tag_refuses_other_agents(
    api: Api, node: Machine, other: Machine, clock: FixedClock
) -> None:
    # Given a collection only agents tagged site=paris may read
    statuses(batch(api, node, [rec("k", hlc(clock), 1, collection="secret")]))
    put = api.operator(FN, "PUT", "/v1/relay/collections/secret", {"readers": {"tag": {"site": "paris"}}})
    assert put.status == 200, put.body
    # When each agent queries it
    # Then the tagged one reads, the other gets 403, and an operator reads
    assert query(api, node, collection="secret").status == 200
    refused = query(api, other, collection="secret")
    assert refused.status == 403
    assert refused.problem_code() == "collection-restricted"
    assert "tagged site=paris" in refused.json["detail"]
    assert api.operator(FN, "POST", "/v1/relay/records/query", {"collection": "secret"}).status == 200
    # And opening it to the fleet lets the other in
    api.operator(FN, "PUT", "/v1/relay/collections/secret", {"readers": "fleet"})
    assert query(api, other, collection="secret").status == 200


def test_a_self_assigned_tag_meets_no_read_policy(api: Api, node: Machine, clock: FixedClock) -> None:
    # Given a collection only agents tagged team=x may read
    statuses(batch(api, node, [rec("k", hlc(clock), 1, collection="secret")]))
    api.operator(FN, "PUT", "/v1/relay/collections/secret", {"readers": {"tag": {"team": "x"}}})
    # And an agent registered with a token that grants no tags, asking for team=x itself
    asker = Machine("asker")
    assert api.register(asker, api.mint_token(), asker.register_body(tags={"team": "x"})).status == 201
    # When it queries the collection / Then 403: what it asked for is a label, not a grant
    refused = query(api, asker, collection="secret")
    assert (refused.status, refused.problem_code()) == (403, "collection-restricted")
    shown = api.operator("operator", "GET", f"/v1/agents/{asker.agent_id}").json
    assert (shown["tags"], shown["requested_tags"]) == ({}, {"team": "x"})
    # And once an operator sets the tag, it authorizes
    api.operator("operator", "PUT", f"/v1/agents/{asker.agent_id}/tags", {"tags": {"team": "x"}})
    assert query(api, asker, collection="secret").status == 200


def test_a_token_granted_tag_meets_the_read_policy(api: Api, clock: FixedClock) -> None:
    # Given a collection restricted to team=x and an agent whose token grants team=x
    granted = Machine("granted")
    assert api.register(granted, api.mint_token(tags={"team": "x"})).status == 201
    api.operator(FN, "PUT", "/v1/relay/collections/secret", {"readers": {"tag": {"team": "x"}}})
    # When it queries / Then it reads
    assert query(api, granted, collection="secret").status == 200


def test_operators_see_each_nodes_sync_state(api: Api, node: Machine, clock: FixedClock) -> None:
    # Given a node that wrote two keys, deleted one, resent one and sent one stale record
    a1, b1 = rec("a", hlc(clock, 1), 1), rec("b", hlc(clock, 2), 2)
    statuses(batch(api, node, [a1, b1]))
    tomb = rec("b", hlc(clock, 3), deleted=True)
    statuses(batch(api, node, [tomb, a1, rec("a", hlc(clock, 0), 0)]))
    # When an operator looks at the node
    state = api.operator(FN, "GET", f"/v1/relay/nodes/{node.agent_id}").json
    # Then counts and the last applied hlc are the node's
    assert (state["records"], state["tombstones"]) == (1, 1)
    assert (state["applied"], state["duplicate"], state["stale"]) == (3, 1, 1)
    assert state["last_applied_hlc"] == tomb["hlc"]


def test_unsigned_relay_calls_are_401(api: Api, clock: FixedClock) -> None:
    # Given no signature / When a batch is sent / Then 401
    reply = api.call(FN, "POST", "/v1/relay/batch", body={"records": [rec("k", hlc(clock), 1)]})
    assert reply.status == 401


def test_records_the_store_throttles_are_answered_retry_and_land_when_sent_again(
    deps: Deps, clock: FixedClock, node: Machine
) -> None:
    # Given the relay's store with DynamoDB throttling most record writes (after botocore's retries)
    service = RecordService(DynamoRelayRepository(), clock)
    records = [make_record(**rec(f"k{i:02d}", hlc(clock), i)) for i in range(16)]
    injector = FaultInjector(FaultPlan(per_operation={("throttle", "PutItem"): 0.8}, seed=7))
    injector.attach(table_client())
    try:
        # When a batch is applied
        first = service.apply(str(node.agent_id), records)
    finally:
        injector.detach()
    # Then each record is applied or answered retry (some of each), none lost, none a failure
    outcomes = [answer.outcome for answer in first]
    assert set(outcomes) == {Outcome.APPLIED, Outcome.RETRY}
    # And when the node sends the retried ones again, they apply
    again = [r for r, answer in zip(records, first, strict=True) if answer.outcome is Outcome.RETRY]
    assert {answer.outcome for answer in service.apply(str(node.agent_id), again)} == {Outcome.APPLIED}
    page = service.query(RecordQuery(collection="inv", node_id=node.agent_id, limit=100), reader_tags=None)
    assert sorted(item.key for item in page.items) == [f"k{i:02d}" for i in range(16)]
