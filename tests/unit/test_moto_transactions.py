"""The dev stack's moto transactions back up only the items they touch, and still roll back fully."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fleetlink.local.moto_backend import local_dynamodb

TABLE = "transactions"


@pytest.fixture
def client() -> Iterator[Any]:
    with local_dynamodb(TABLE) as dynamodb:
        for pk, value in (("a", "1"), ("b", "2")):
            dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": pk}, "sk": {"S": "x"}, "v": {"S": value}})
        yield dynamodb


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "x"}}


def items(client: Any) -> dict[str, str]:
    found = {}
    for pk in ("a", "b", "c"):
        item = client.get_item(TableName=TABLE, Key=key(pk), ConsistentRead=True).get("Item")
        if item:
            found[pk] = item["v"]["S"]
    return found


def actions(last: dict[str, Any]) -> list[dict[str, Any]]:
    """Put a new item, update one, delete another, then ``last``."""
    return [
        {"Put": {"TableName": TABLE, "Item": {**key("c"), "v": {"S": "3"}}}},
        {
            "Update": {
                "TableName": TABLE,
                "Key": key("a"),
                "UpdateExpression": "SET v = :v",
                "ExpressionAttributeValues": {":v": {"S": "changed"}},
            }
        },
        {"Delete": {"TableName": TABLE, "Key": key("b")}},
        last,
    ]


def test_a_cancelled_transaction_leaves_every_item_as_it_was(client: Any) -> None:
    # Given a transaction whose last condition fails after a put, an update and a delete were applied
    failing = {
        "ConditionCheck": {
            "TableName": TABLE,
            "Key": key("zz"),
            "ConditionExpression": "attribute_exists(pk)",
        }
    }
    # When it runs; Then it is cancelled, and every item is back: none created, changed or deleted
    with pytest.raises(ClientError, match="TransactionCanceled"):
        client.transact_write_items(TransactItems=actions(failing))
    assert items(client) == {"a": "1", "b": "2"}


def test_a_transaction_refused_for_touching_one_item_twice_leaves_the_table_as_it_was(client: Any) -> None:
    # Given a transaction that names item a twice (moto notices only when it reaches the second)
    twice = {"Delete": {"TableName": TABLE, "Key": key("a")}}
    # When it runs; Then it is refused and the first actions are undone
    with pytest.raises(ClientError, match="ValidationException"):
        client.transact_write_items(TransactItems=actions(twice))
    assert items(client) == {"a": "1", "b": "2"}


def test_a_successful_transaction_applies_every_action(client: Any) -> None:
    # Given a transaction whose condition holds; When it runs; Then all four actions took effect
    holds = {
        "ConditionCheck": {
            "TableName": TABLE,
            "Key": key("d"),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
    client.transact_write_items(TransactItems=actions(holds))
    assert items(client) == {"a": "changed", "c": "3"}


def test_the_table_is_not_copied_per_transaction() -> None:
    # Given the patched moto; Then its transaction code's copy of a table is the table itself
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    with local_dynamodb(TABLE):
        table = next(iter(models.dynamodb_backends.values()))["us-east-1"].tables[TABLE]
        assert isinstance(table, Table)
        assert models.copy.deepcopy(table) is table


def test_the_keyed_sort_lists_items_in_the_order_of_typed_comparisons(client: Any) -> None:
    # Given items whose keys would sort differently as text and as typed values
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    for pk in ("b", "a", "c", "B", "aa"):
        for sk in ("10", "9", "x", "X"):
            client.put_item(TableName=TABLE, Item={"pk": {"S": pk}, "sk": {"S": sk}, "v": {"S": "-"}})
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[TABLE]
    everything = [item for by_range in table.items.values() for item in by_range.values()]

    # When moto lists the whole table (as every index query and scan does)
    listed = table.all_items()

    # Then the order is exactly that of comparing the typed keys pair by pair
    assert listed == sorted(everything, key=lambda item: (item.hash_key, item.range_key))
    assert len(listed) == 20  # the fixture's two items among them, overwritten
