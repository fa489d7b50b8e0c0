"""DynamoDB from moto, in this process, with the table built from the one definition."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}

_atomic_installed = False
_touched_only_installed = False
_keyed_sort_installed = False
#: Held while moto serves a request; hold it to see the tables between requests.
request_lock = threading.RLock()
#: Called under ``request_lock`` after each request moto served, with the request and moto's answer.
_after_each_request: list[Callable[[Any, Any], None]] = []


def make_requests_atomic() -> None:
    """Serve one moto request at a time, so a conditional write is atomic as it is in DynamoDB.

    moto checks a condition and then writes in plain Python; two threads could both pass the
    check. Real DynamoDB applies each request atomically, and this lock restores exactly that
    (handler code still interleaves between requests, so races stay observable).
    """
    global _atomic_installed
    if _atomic_installed:
        return
    from moto.core.botocore_stubber import BotocoreStubber

    unlocked = BotocoreStubber.process_request

    def process_request(self: BotocoreStubber, request: Any) -> Any:
        with request_lock:
            answer = unlocked(self, request)
            for observer in _after_each_request:
                observer(request, answer)
            return answer

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    _atomic_installed = True


def after_each_request(observer: Callable[[Any, Any], None]) -> None:
    """Call ``observer(request, answer)`` after each request moto serves, under its request lock."""
    make_requests_atomic()
    if observer not in _after_each_request:
        _after_each_request.append(observer)


def snapshot_touched_items_only() -> None:
    """Let a moto transaction back up only the items it touches, not its whole table.

    moto deep-copies every table a ``TransactWriteItems`` names before applying it, to restore on
    failure: on a table of N items each transaction costs O(N) time and garbage, and a long-lived
    dev stack grows to gigabytes. This keeps the table (its ``deepcopy`` in moto's transaction code
    answers the table itself), copies the at most 100 touched items first, and on any failure puts
    exactly those back (or removes those the transaction created) before the error goes on.
    """
    global _touched_only_installed
    if _touched_only_installed:
        return
    import copy
    import types

    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    def location(table: Table, op: dict[str, Any]) -> tuple[Any, Any]:
        key = op.get("Key") or op["Item"]
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        return hash_value, range_value

    def restore(table: Table, where: tuple[Any, Any], item: Any) -> None:
        hash_value, range_value = where
        if range_value is None:
            if item is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = item
        elif item is None:
            table.items.get(hash_value, {}).pop(range_value, None)
            if hash_value in table.items and not table.items[hash_value]:
                del table.items[hash_value]
        else:
            table.items[hash_value][range_value] = item

    unpatched = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups: list[tuple[Table, tuple[Any, Any], Any]] = []
        for action in transact_items[:100]:
            for op in action.values():
                table = self.tables.get(op.get("TableName"))
                if table is None or not (op.get("Key") or op.get("Item")):
                    continue
                try:
                    where = location(table, op)
                    current = table.get_item(*where)
                except Exception:  # noqa: S112 - a malformed action: moto refuses it, nothing to back up
                    continue
                backups.append((table, where, copy.deepcopy(current)))
        try:
            unpatched(self, transact_items)
        except BaseException:
            for table, where, item in reversed(backups):
                restore(table, where, item)
            raise

    models.copy = types.SimpleNamespace(deepcopy=deepcopy)  # type: ignore[assignment,attr-defined]
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    _touched_only_installed = True


def sort_items_by_key_once() -> None:
    """Let moto order a table's items by computing each item's key once, not per comparison.

    Every index query and scan in moto lists the whole table through ``Table.all_items``, sorted
    with ``DynamoType.__lt__``, which converts both sides on each of the n log n comparisons: on a
    table of a few thousand items that conversion is most of a test's time. The order is the same
    (the converted key values are what ``__lt__`` compares); only the work differs.
    """
    global _keyed_sort_installed
    if _keyed_sort_installed:
        return
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    def sort_key(item: Item) -> Any:
        if item.range_key is None:
            return item.hash_key.cast_value
        return item.hash_key.cast_value, item.range_key.cast_value

    def all_items(self: Table) -> list[Item]:
        if not self.range_key_attr:
            return sorted(self.items.values(), key=sort_key)  # type: ignore[arg-type]
        return sorted((item for by_range in self.items.values() for item in by_range.values()), key=sort_key)

    Table.all_items = all_items  # type: ignore[method-assign]
    _keyed_sort_installed = True


@contextmanager
def local_dynamodb(table_name: str) -> Iterator[Any]:
    """Start moto, create the table (with TTL on), yield a boto3 DynamoDB client; stop on exit."""
    for name, value in FAKE_AWS_ENV.items():
        os.environ.setdefault(name, value)
    import boto3
    from moto import mock_aws

    from fleetlink.store.table import create_table

    make_requests_atomic()
    snapshot_touched_items_only()
    sort_items_by_key_once()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=os.environ["AWS_DEFAULT_REGION"])
        create_table(client, table_name)
        yield client
