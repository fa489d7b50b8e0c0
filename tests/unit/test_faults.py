"""DynamoDB fault injection on moto: each fault kind as the caller sees it, and what reaches the table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from pynamodb.exceptions import PutError

from fleetlink.local.faults import FaultInjector, FaultPlan, inject_faults
from fleetlink.local.moto_backend import local_dynamodb
from fleetlink.store.agents import EvidenceItem
from fleetlink.store.base import bind_table
from fleetlink.store.contention import MAX_ATTEMPTS

TABLE = "fleetlink-faults"
REGION = "us-east-1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client() -> Iterator[Any]:
    """A fresh moto table and a client that tries each call three times with short backoff."""
    with local_dynamodb(TABLE):
        yield boto3.client(
            "dynamodb",
            region_name=REGION,
            config=Config(retries={"mode": "legacy", "total_max_attempts": 3}),
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def inject(plan: FaultPlan, client: Any, clock: FakeClock | None = None) -> Any:
    return inject_faults(plan, client, include_pynamodb=False, clock=clock or FakeClock())


def key(pk: str, sk: str = "#") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def item(pk: str, sk: str = "#", **values: int) -> dict[str, Any]:
    return key(pk, sk) | {name: {"N": str(v)} for name, v in values.items()}


def stored(client: Any, pk: str, sk: str = "#") -> dict[str, Any] | None:
    found: dict[str, Any] | None = client.get_item(TableName=TABLE, Key=key(pk, sk), ConsistentRead=True).get(
        "Item"
    )
    return found


# --- the plan -----------------------------------------------------------------------------------


def test_plan_parses_the_spec_string() -> None:
    plan = FaultPlan.parse("throttle=0.05,conflict=0.1,unprocessed=0.2,timeout=0.01,stale=0.3,seed=7")
    assert (plan.throttle, plan.conflict, plan.unprocessed, plan.timeout, plan.stale, plan.seed) == (
        0.05,
        0.1,
        0.2,
        0.01,
        0.3,
        7,
    )
    assert plan.connect == 0.0


def test_plan_overrides_one_operation() -> None:
    plan = FaultPlan.parse("throttle=0.1, throttle@UpdateItem=0.9, timeout_applied=1, stale_window_ms=250")
    assert plan.rate("throttle", "UpdateItem") == 0.9
    assert plan.rate("throttle", "PutItem") == 0.1
    assert plan.rate("unprocessed", "PutItem") == 0.0  # does not apply
    assert (plan.timeout_applied, plan.stale_window_ms) == (1.0, 250)


@pytest.mark.parametrize(
    "spec",
    [
        "throttle=1.5",
        "throttle=-0.1",
        "throttle=often",
        "seed=1.5",
        "slow=0.1",
        "throttle",
        "throttle=",
        "unprocessed@PutItem=0.5",
        "throttle@DescribeTable=0.5",
        "gremlins@PutItem=0.5",
        "stale_window_ms=-1",
    ],
)
def test_plan_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match=r"fault|stale_window_ms"):
        FaultPlan.parse(spec)


# --- throttling, per attempt ----------------------------------------------------------------------


def test_throttling_is_injected_on_every_attempt_and_nothing_is_written(client: Any) -> None:
    # Given every attempt throttled / When a PutItem is made
    with inject(FaultPlan(throttle=1.0), client) as faults, pytest.raises(ClientError) as raised:
        client.put_item(TableName=TABLE, Item=item("a"))
    # Then botocore retried (3 attempts, 3 injections), the error is a throttling code, and no item exists
    error = raised.value.response
    assert error["Error"]["Code"] in {"ThrottlingException", "ProvisionedThroughputExceededException"}
    assert error["ResponseMetadata"]["RetryAttempts"] == 2
    assert faults.counts[("throttle", "PutItem")] == 3
    assert stored(client, "a") is None


def test_retries_get_through_a_partial_throttle(client: Any) -> None:
    # Given half the attempts throttled / When many reads are made
    with inject(FaultPlan(throttle=0.5, seed=3), client) as faults:
        outcomes = []
        for n in range(40):
            try:
                client.get_item(TableName=TABLE, Key=key(f"k{n}"))
                outcomes.append("ok")
            except ClientError:
                outcomes.append("throttled")
    # Then most calls succeed after botocore's retries, some run out, and more attempts were throttled
    assert outcomes.count("ok") > outcomes.count("throttled") > 0
    assert faults.counts[("throttle", "GetItem")] > outcomes.count("throttled")


def test_both_throttling_codes_occur(client: Any) -> None:
    codes = set()
    with inject(FaultPlan(throttle=1.0, seed=1), client):
        for _ in range(8):
            with pytest.raises(ClientError) as raised:
                client.get_item(TableName=TABLE, Key=key("a"))
            codes.add(raised.value.response["Error"]["Code"])
    assert codes == {"ThrottlingException", "ProvisionedThroughputExceededException"}


def test_the_same_seed_injects_the_same_faults(client: Any) -> None:
    def run() -> list[str]:
        seen = []
        with inject(FaultPlan(throttle=0.3, connect=0.2, seed=42), client):
            for n in range(15):
                try:
                    client.get_item(TableName=TABLE, Key=key(f"k{n}"))
                    seen.append("ok")
                except (ClientError, EndpointConnectionError) as exc:
                    seen.append(type(exc).__name__)
        return seen

    assert run() == run()


def test_a_throttled_transaction_is_cancelled_with_a_throttling_reason(client: Any) -> None:
    actions = [{"Put": {"TableName": TABLE, "Item": item(f"t{n}")}} for n in range(3)]
    with inject(FaultPlan(throttle=1.0), client), pytest.raises(ClientError) as raised:
        client.transact_write_items(TransactItems=actions)
    error = raised.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert sorted(r["Code"] for r in error["CancellationReasons"]) == ["None", "None", "ThrottlingError"]
    assert error["ResponseMetadata"]["RetryAttempts"] == 0  # not retried by botocore, as on AWS
    assert all(stored(client, f"t{n}") is None for n in range(3))


# --- conflicts ------------------------------------------------------------------------------------


def test_a_transaction_conflict_cancels_the_whole_transaction(client: Any) -> None:
    # Given conflicts on / When a two-action transaction runs
    actions = [{"Put": {"TableName": TABLE, "Item": item(f"t{n}")}} for n in range(2)]
    with inject(FaultPlan(conflict=1.0), client) as faults, pytest.raises(ClientError) as raised:
        client.transact_write_items(TransactItems=actions)
    # Then it is cancelled with one TransactionConflict reason per the wire format, and nothing is written
    reasons = raised.value.response["CancellationReasons"]
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert sorted(r["Code"] for r in reasons) == ["None", "TransactionConflict"]
    assert faults.counts[("conflict", "TransactWriteItems")] == 1
    assert stored(client, "t0") is None
    assert stored(client, "t1") is None


def test_a_single_write_meets_a_plain_transaction_conflict(client: Any) -> None:
    client.put_item(TableName=TABLE, Item=item("a", n=1))
    with inject(FaultPlan(conflict=1.0), client), pytest.raises(ClientError) as raised:
        client.update_item(
            TableName=TABLE,
            Key=key("a"),
            UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": "2"}},
        )
    assert raised.value.response["Error"]["Code"] == "TransactionConflictException"
    assert stored(client, "a") == item("a", n=1)


def test_reads_never_meet_a_plain_conflict(client: Any) -> None:
    with inject(FaultPlan(conflict=1.0), client) as faults:
        client.get_item(TableName=TABLE, Key=key("a"))
        client.query(
            TableName=TABLE, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}}
        )
    assert not faults.counts


def test_pynamodb_models_see_the_fault_through_their_shared_client(client: Any) -> None:
    # Given the models bound to the table and faults injected into their shared client
    bind_table(TABLE, REGION)
    with inject_faults(FaultPlan(conflict=1.0)) as faults, pytest.raises(PutError) as raised:
        EvidenceItem(pk="SEEN#fpr#x", sk="AGENT#agt_1", agent_id="agt_1").save()
    # Then the model's save fails with DynamoDB's error code once the store's contention handler
    # spent its attempts (each one met the fault)
    assert raised.value.cause_response_code == "TransactionConflictException"
    assert faults.counts[("conflict", "PutItem")] == MAX_ATTEMPTS


# --- unprocessed items and keys -------------------------------------------------------------------


def test_batch_write_leaves_a_subset_unprocessed_and_unwritten(client: Any) -> None:
    # Given unprocessed faults on / When ten puts are batched
    puts = [{"PutRequest": {"Item": item(f"b{n}")}} for n in range(10)]
    with inject(FaultPlan(unprocessed=1.0, seed=5), client) as faults:
        answer = client.batch_write_item(RequestItems={TABLE: puts})
    # Then some come back unprocessed, those are not in the table, and every other one is
    unprocessed = answer["UnprocessedItems"][TABLE]
    left = {entry["PutRequest"]["Item"]["pk"]["S"] for entry in unprocessed}
    assert 0 < len(left) < 10
    for n in range(10):
        assert (stored(client, f"b{n}") is None) == (f"b{n}" in left)
    assert faults.counts[("unprocessed", "BatchWriteItem")] == 1
    # And the unprocessed requests can be sent again as they are
    assert client.batch_write_item(RequestItems=answer["UnprocessedItems"])["UnprocessedItems"] == {}
    assert all(stored(client, f"b{n}") for n in range(10))


def test_batch_get_leaves_a_subset_of_keys_unprocessed(client: Any) -> None:
    for n in range(6):
        client.put_item(TableName=TABLE, Item=item(f"g{n}", n=n))
    request = {TABLE: {"Keys": [key(f"g{n}") for n in range(6)], "ConsistentRead": True}}
    with inject(FaultPlan(unprocessed=1.0, seed=2), client):
        answer = client.batch_get_item(RequestItems=request)
    read = {i["pk"]["S"] for i in answer["Responses"][TABLE]}
    held = answer["UnprocessedKeys"][TABLE]
    assert held["ConsistentRead"] is True
    assert 0 < len(read) < 6
    assert read | {k["pk"]["S"] for k in held["Keys"]} == {f"g{n}" for n in range(6)}
    assert not read & {k["pk"]["S"] for k in held["Keys"]}


def test_a_single_item_batch_is_never_left_unprocessed(client: Any) -> None:
    with inject(FaultPlan(unprocessed=1.0), client) as faults:
        answer = client.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": item("solo")}}]})
    assert answer["UnprocessedItems"] == {}
    assert not faults.counts


# --- connection errors and timeouts ----------------------------------------------------------------


def test_a_connection_error_reaches_the_caller_after_retries_and_writes_nothing(client: Any) -> None:
    with inject(FaultPlan(connect=1.0), client) as faults, pytest.raises(EndpointConnectionError):
        client.put_item(TableName=TABLE, Item=item("c"))
    assert faults.counts[("connect", "PutItem")] == 3
    assert stored(client, "c") is None


def test_a_read_timeout_on_a_read(client: Any) -> None:
    with inject(FaultPlan(timeout=1.0), client) as faults, pytest.raises(ReadTimeoutError):
        client.get_item(TableName=TABLE, Key=key("a"))
    assert faults.counts[("timeout", "GetItem")] == 3


def test_a_write_applied_then_timed_out_fails_its_own_retry(client: Any) -> None:
    # Given every write times out after it was applied
    put = {"TableName": TABLE, "Item": item("once"), "ConditionExpression": "attribute_not_exists(pk)"}
    with inject(FaultPlan(timeout=1.0, timeout_applied=1.0), client) as faults:
        # When a conditional put is made / Then the caller sees a timeout
        with pytest.raises(ReadTimeoutError):
            client.put_item(**put)
        # And only the first attempt applied: botocore's own two retries failed the condition
        assert faults.counts[("timeout_applied", "PutItem")] == 1
        assert faults.counts[("timeout", "PutItem")] == 2
    assert stored(client, "once") == item("once")
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        client.put_item(**put)


def test_a_write_timed_out_before_it_was_applied_writes_nothing(client: Any) -> None:
    with inject(FaultPlan(timeout=1.0, timeout_applied=0.0), client), pytest.raises(ReadTimeoutError):
        client.put_item(TableName=TABLE, Item=item("never"))
    assert stored(client, "never") is None


# --- stale reads ----------------------------------------------------------------------------------


def update_n(client: Any, pk: str, n: int) -> None:
    client.update_item(
        TableName=TABLE,
        Key=key(pk),
        UpdateExpression="SET n = :n",
        ExpressionAttributeValues={":n": {"N": str(n)}},
    )


def test_an_eventually_consistent_get_answers_the_previous_version(client: Any, clock: FakeClock) -> None:
    # Given an item at version 1, then updated to 2 with stale reads on
    client.put_item(TableName=TABLE, Item=item("s", n=1))
    with inject(FaultPlan(stale=1.0, stale_window_ms=1000), client, clock) as faults:
        update_n(client, "s", 2)
        # When read eventually consistently / Then version 1; consistently / Then version 2
        assert client.get_item(TableName=TABLE, Key=key("s"))["Item"] == item("s", n=1)
        assert stored(client, "s") == item("s", n=2)
        # And once the staleness window has passed, the eventually consistent read catches up
        clock.now += 1.5
        assert client.get_item(TableName=TABLE, Key=key("s"))["Item"] == item("s", n=2)
    assert faults.counts[("stale", "GetItem")] == 1


def test_a_stale_get_misses_a_just_created_item_and_keeps_a_just_deleted_one(client: Any) -> None:
    client.put_item(TableName=TABLE, Item=item("gone", n=1))
    with inject(FaultPlan(stale=1.0), client):
        client.put_item(TableName=TABLE, Item=item("new", n=1))
        client.delete_item(TableName=TABLE, Key=key("gone"))
        assert "Item" not in client.get_item(TableName=TABLE, Key=key("new"))
        assert client.get_item(TableName=TABLE, Key=key("gone"))["Item"] == item("gone", n=1)
        projected = client.get_item(
            TableName=TABLE,
            Key=key("gone"),
            ProjectionExpression="#n, pk",
            ExpressionAttributeNames={"#n": "n"},
        )["Item"]
    assert projected == {"pk": {"S": "gone"}, "n": {"N": "1"}}


def test_a_stale_query_shows_old_versions_and_not_new_items(client: Any) -> None:
    # Given a partition of two items, one updated and one added under stale reads
    client.put_item(TableName=TABLE, Item=item("p", "1", n=1))
    client.put_item(TableName=TABLE, Item=item("p", "2", n=1))
    with inject(FaultPlan(stale=1.0), client) as faults:
        client.update_item(
            TableName=TABLE,
            Key=key("p", "1"),
            UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": "9"}},
        )
        client.put_item(TableName=TABLE, Item=item("p", "3", n=1))
        query = {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "p"}},
        }
        # When queried eventually consistently / Then the old version, and no new item
        stale = client.query(**query)
        fresh = client.query(**query, ConsistentRead=True)
    assert stale["Items"] == [item("p", "1", n=1), item("p", "2", n=1)]
    assert stale["Count"] == 2
    assert fresh["Items"] == [item("p", "1", n=9), item("p", "2", n=1), item("p", "3", n=1)]
    assert faults.counts[("stale", "Query")] == 1


def test_an_index_query_is_stale_even_without_consistent_read_false(client: Any) -> None:
    # Given an item moved into an index partition under stale reads
    client.put_item(TableName=TABLE, Item=item("q") | {"gsi2pk": {"S": "QUEUE#x"}, "gsi2sk": {"S": "1"}})
    client.put_item(TableName=TABLE, Item=item("r"))
    with inject(FaultPlan(stale=1.0), client):
        client.update_item(
            TableName=TABLE,
            Key=key("r"),
            UpdateExpression="SET gsi2pk = :p, gsi2sk = :s",
            ExpressionAttributeValues={":p": {"S": "QUEUE#x"}, ":s": {"S": "2"}},
        )
        # When the index is queried / Then the lagging index does not show it yet
        answer = client.query(
            TableName=TABLE,
            IndexName="gsi2",
            KeyConditionExpression="gsi2pk = :p",
            ExpressionAttributeValues={":p": {"S": "QUEUE#x"}},
        )
    assert [i["pk"]["S"] for i in answer["Items"]] == ["q"]


def test_a_stale_batch_get_serves_old_images_only_where_reads_are_eventually_consistent(client: Any) -> None:
    client.put_item(TableName=TABLE, Item=item("x", n=1))
    client.put_item(TableName=TABLE, Item=item("y", n=1))
    with inject(FaultPlan(stale=1.0), client):
        update_n(client, "x", 2)
        client.delete_item(TableName=TABLE, Key=key("y"))
        stale = client.batch_get_item(RequestItems={TABLE: {"Keys": [key("x"), key("y")]}})
        fresh = client.batch_get_item(
            RequestItems={TABLE: {"Keys": [key("x"), key("y")], "ConsistentRead": True}}
        )
    by_pk = {i["pk"]["S"]: i for i in stale["Responses"][TABLE]}
    assert by_pk == {"x": item("x", n=1), "y": item("y", n=1)}
    assert fresh["Responses"][TABLE] == [item("x", n=2)]


def test_only_the_latest_previous_version_is_served(client: Any) -> None:
    client.put_item(TableName=TABLE, Item=item("v", n=1))
    with inject(FaultPlan(stale=1.0), client):
        update_n(client, "v", 2)
        update_n(client, "v", 3)
        assert client.get_item(TableName=TABLE, Key=key("v"))["Item"] == item("v", n=2)


def test_a_failed_write_records_no_previous_version(client: Any) -> None:
    client.put_item(TableName=TABLE, Item=item("f", n=1))
    with inject(FaultPlan(stale=1.0), client) as faults:
        with pytest.raises(ClientError, match="ConditionalCheckFailed"):
            client.put_item(
                TableName=TABLE, Item=item("f", n=2), ConditionExpression="attribute_not_exists(pk)"
            )
        assert client.get_item(TableName=TABLE, Key=key("f"))["Item"] == item("f", n=1)
    assert not faults.counts


# --- wiring ---------------------------------------------------------------------------------------


def test_control_plane_calls_are_never_faulted(client: Any) -> None:
    everything = FaultPlan(throttle=1.0, connect=1.0, timeout=1.0, conflict=1.0)
    with inject(everything, client) as faults:
        assert client.describe_table(TableName=TABLE)["Table"]["TableName"] == TABLE
    assert not faults.counts


def test_detach_restores_the_client(client: Any) -> None:
    injector = FaultInjector(FaultPlan(throttle=1.0))
    injector.attach(client)
    injector.attach(client)  # idempotent
    injector.detach()
    client.put_item(TableName=TABLE, Item=item("after"))
    assert stored(client, "after") == item("after")


def test_counts_and_summary_name_kind_and_operation(client: Any) -> None:
    with inject(FaultPlan(throttle=1.0), client) as faults:
        for _ in range(2):
            with pytest.raises(ClientError):
                client.delete_item(TableName=TABLE, Key=key("z"))
    assert faults.counts == {("throttle", "DeleteItem"): 6}
    assert faults.summary().split() == ["throttle", "DeleteItem", "6"]
