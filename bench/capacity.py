"""Request units per DynamoDB call: what moto reports, and what AWS would bill.

A measurement aid for benchmarks and tests on moto, never imported by the Lambdas. A
:class:`CapacityMeter` hooks botocore's events on the DynamoDB clients in use (PynamoDB's and any
boto3 client given to it): ``before-parameter-build`` asks for ``ReturnConsumedCapacity=INDEXES``
and notes the items a write will touch, ``after-call`` records the call. moto's own
``ConsumedCapacity`` is a constant per operation (not AWS's rules), so every call is also costed
independently from item sizes, per the AWS developer guide:

- item size: UTF-8 attribute names + values (strings: UTF-8 bytes; numbers: 1 byte per two
  significant digits + 1; binary: raw bytes; booleans and null: 1; maps and lists: 3 + 1 per
  element + the elements);
- reads: 4 KB units, 0.5 per unit eventually consistent, 1 strongly consistent, 2 transactional;
  GetItem and BatchGetItem round each item up, Query sums the items it reads, then rounds up;
  a read of a missing item still costs one unit;
- writes: 1 KB units, the larger of the item before and after the write (PutItem over an existing
  item, UpdateItem), the deleted item for DeleteItem; a conditional write that fails still costs
  the existing item (at least 1 unit); transactions cost twice (a ConditionCheck counts as a write);
- a global secondary index costs its own write units per index entry written: an entry added,
  removed or changed is one write, an entry whose index key changed is two (delete + put).

Assumptions where AWS does not document the rule: index writes of a transaction are billed once
(they propagate after the commit); a cancelled transaction is recorded with 0 units and flagged,
as AWS returns no ``ConsumedCapacity`` for it.

To know the item before and after a write (and the full size of an item a projection trimmed),
the meter reads moto's in-memory backend by key. It never calls the Scan API; a Query that
filters or projects is re-run without the filter on a separate, unmetered client to see the items
it read. It works only on moto.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

READ_UNIT_BYTES = 4096
WRITE_UNIT_BYTES = 1024
_CONTAINER_OVERHEAD = 3
_ELEMENT_OVERHEAD = 1
_CONTEXT_KEY = "fleetlink.capacity"
_PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")

WireItem = Mapping[str, Mapping[str, Any]]


# --- sizes and units -------------------------------------------------------------------------


def _number_size(text: str) -> int:
    mantissa = re.split("[eE]", text.strip().lstrip("+-"))[0]
    digits = mantissa.replace(".", "").strip("0")
    return math.ceil(max(1, len(digits)) / 2) + 1


def _binary_size(value: Any) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return len(str(value).encode())


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value in DynamoDB's wire format (``{"S": "x"}``), without its name."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return _number_size(str(data))
    if kind == "B":
        return _binary_size(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in data)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in data)
    if kind == "BS":
        return sum(_binary_size(b) for b in data)
    if kind == "M":
        return _CONTAINER_OVERHEAD + sum(
            len(name.encode()) + value_size(member) + _ELEMENT_OVERHEAD for name, member in data.items()
        )
    if kind == "L":
        return _CONTAINER_OVERHEAD + sum(value_size(member) + _ELEMENT_OVERHEAD for member in data)
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: WireItem | None) -> int:
    """Bytes of an item in DynamoDB's wire format: names plus values (0 for no item)."""
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


def read_units(size_bytes: int, *, consistent: bool = False, transactional: bool = False) -> float:
    """Read units of one read of ``size_bytes`` (rounded up to 4 KB; at least one unit)."""
    units = max(1, math.ceil(size_bytes / READ_UNIT_BYTES))
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2


def query_read_units(sizes: Sequence[int], *, consistent: bool = False) -> float:
    """Read units of a Query: the items' sizes summed, then rounded up to 4 KB."""
    return read_units(sum(sizes), consistent=consistent)


def batch_read_units(sizes: Sequence[int], *, consistent: bool = False) -> float:
    """Read units of a BatchGetItem: each item rounded up to 4 KB on its own (0 bytes: missing item)."""
    return sum(read_units(size, consistent=consistent) for size in sizes)


def write_units(size_bytes: int, *, transactional: bool = False) -> float:
    """Write units of one write of ``size_bytes`` (rounded up to 1 KB; at least one unit)."""
    units = max(1, math.ceil(size_bytes / WRITE_UNIT_BYTES))
    return 2.0 * units if transactional else float(units)


def item_write_units(
    before: WireItem | None, after: WireItem | None, *, transactional: bool = False
) -> float:
    """Write units of a write that turns ``before`` into ``after``: the larger of the two counts."""
    return write_units(max(item_size(before), item_size(after)), transactional=transactional)


@dataclass(frozen=True)
class IndexSchema:
    """A global secondary index as the meter needs it: keys and projection."""

    name: str
    key_attributes: tuple[str, ...]
    table_key_attributes: tuple[str, ...]
    projection: str = "ALL"
    non_key_attributes: tuple[str, ...] = ()

    def entry(self, item: WireItem | None) -> dict[str, Any] | None:
        """The item's index entry, or None when the item is not in this (sparse) index."""
        if item is None or any(name not in item for name in self.key_attributes):
            return None
        if self.projection == "ALL":
            return dict(item)
        kept = set(self.key_attributes) | set(self.table_key_attributes)
        if self.projection == "INCLUDE":
            kept |= set(self.non_key_attributes)
        return {name: value for name, value in item.items() if name in kept}


def index_write_units(index: IndexSchema, before: WireItem | None, after: WireItem | None) -> float:
    """Write units the index consumes for a table write that turns ``before`` into ``after``."""
    old, new = index.entry(before), index.entry(after)
    if old is None and new is None:
        return 0.0
    if old is None or new is None:
        return write_units(item_size(old or new))
    if any(old[name] != new[name] for name in index.key_attributes):
        return write_units(item_size(old)) + write_units(item_size(new))
    if old == new:
        return 0.0
    return write_units(max(item_size(old), item_size(new)))


# --- records -----------------------------------------------------------------------------------


@dataclass
class CallRecord:
    """One DynamoDB call: what moto reported, and what AWS would bill (computed)."""

    operation: str
    table: str
    rcu: float = 0.0
    wcu: float = 0.0
    gsi_rcu: float = 0.0
    gsi_wcu: float = 0.0
    reported: float | None = None
    reported_detail: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The record as plain data."""
        return {
            "operation": self.operation,
            "table": self.table,
            "rcu": self.rcu,
            "wcu": self.wcu,
            "gsi_rcu": self.gsi_rcu,
            "gsi_wcu": self.gsi_wcu,
            "reported": self.reported,
            "reported_detail": self.reported_detail,
            "error": self.error,
            "notes": self.notes,
        }


@dataclass
class Measurement:
    """The calls made inside one ``meter.measure(...)`` block, with their totals."""

    label: str
    calls: list[CallRecord] = field(default_factory=list)

    @property
    def rcu(self) -> float:
        """Read units, table and indexes."""
        return sum(c.rcu + c.gsi_rcu for c in self.calls)

    @property
    def wcu(self) -> float:
        """Write units on the table."""
        return sum(c.wcu for c in self.calls)

    @property
    def gsi_wcu(self) -> float:
        """Write units on global secondary indexes."""
        return sum(c.gsi_wcu for c in self.calls)

    @property
    def reported(self) -> float:
        """Units the service (moto) reported in ConsumedCapacity."""
        return sum(c.reported or 0.0 for c in self.calls)

    def operations(self) -> list[str]:
        """The operations called, in order."""
        return [c.operation for c in self.calls]

    def totals(self) -> dict[str, Any]:
        """``{rcu, wcu, gsi_wcu, calls: [...]}``."""
        return {
            "rcu": self.rcu,
            "wcu": self.wcu,
            "gsi_wcu": self.gsi_wcu,
            "calls": [c.as_dict() for c in self.calls],
        }


def _reported(parsed: Mapping[str, Any]) -> tuple[float | None, list[dict[str, Any]]]:
    capacity = parsed.get("ConsumedCapacity")
    if capacity is None:
        return None, []
    entries = capacity if isinstance(capacity, list) else [capacity]
    total = sum(float(e.get("CapacityUnits", 0.0)) for e in entries)
    return total, [dict(e) for e in entries]


# --- the meter ---------------------------------------------------------------------------------


class _MotoTables:
    """Read access to moto's in-memory tables (key lookups and schemas only)."""

    def __init__(self) -> None:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        self._backends = dynamodb_backends
        self._account = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)

    def _table(self, region: str, table: str) -> Any:
        return self._backends[self._account][region].tables.get(table)

    def key_attributes(self, region: str, table: str) -> tuple[str, ...]:
        found = self._table(region, table)
        if found is None:
            return ()
        return tuple(name for name in (found.hash_key_attr, found.range_key_attr) if name)

    def indexes(self, region: str, table: str) -> list[IndexSchema]:
        found = self._table(region, table)
        if found is None:
            return []
        table_keys = self.key_attributes(region, table)
        return [
            IndexSchema(
                name=index.name,
                key_attributes=tuple(k["AttributeName"] for k in index.schema),
                table_key_attributes=table_keys,
                projection=(index.projection or {}).get("ProjectionType", "ALL"),
                non_key_attributes=tuple((index.projection or {}).get("NonKeyAttributes", ())),
            )
            for index in found.global_indexes
        ]

    def item(self, region: str, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        found = self._table(region, table)
        if found is None:
            return None
        hash_key, range_key = found.hash_key_attr, found.range_key_attr
        item = found.get_item(
            _dynamo_type(key[hash_key]), _dynamo_type(key[range_key]) if range_key else None
        )
        if item is None:
            return None
        attributes: dict[str, Any] = item.to_json()["Attributes"]
        return attributes


def _dynamo_type(value: Mapping[str, Any]) -> Any:
    from moto.dynamodb.models.dynamo_type import DynamoType

    return DynamoType(dict(value))


@dataclass
class _Write:
    """One item a write call touches: where, how, and the item before."""

    action: str
    table: str
    key: dict[str, Any]
    before: dict[str, Any] | None


class CapacityMeter:
    """Counts request units per DynamoDB call on moto; see the module docstring for the rules."""

    def __init__(self, *clients: Any, include_pynamodb: bool = True) -> None:
        self._moto = _MotoTables()
        self._attached: dict[int, Any] = {}  # id -> client, held so an id is never reused
        self._active: list[Measurement] = []
        self._include_pynamodb = include_pynamodb
        self._shadow: Any = None
        self.history: list[CallRecord] = []
        for client in clients:
            self.attach(client)
        self.attach_pynamodb()

    # -- wiring --

    def attach(self, client: Any) -> None:
        """Meter a boto3/botocore DynamoDB client (idempotent)."""
        if id(client) in self._attached:
            return
        client.meta.events.register("before-parameter-build.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)
        self._attached[id(client)] = client

    def attach_pynamodb(self) -> None:
        """Meter the client the fleetlink models share.

        Called again by :meth:`measure`, since binding the table (``bind_table``) makes a new one.
        """
        if not self._include_pynamodb:
            return
        from fleetlink.store.base import table_client

        self.attach(table_client())

    @contextmanager
    def measure(self, label: str) -> Iterator[Measurement]:
        """Record every metered call made inside the block."""
        self.attach_pynamodb()
        measurement = Measurement(label)
        self._active.append(measurement)
        try:
            yield measurement
        finally:
            self._active.remove(measurement)

    # -- botocore events --

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if not self._active:
            return
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params["ReturnConsumedCapacity"] = "INDEXES"
        region = context.get("client_region") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        context[_CONTEXT_KEY] = {
            "params": params,
            "region": region,
            "writes": self._writes_of(model.name, params, region),
        }

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        pending = context.get(_CONTEXT_KEY)
        if not self._active or pending is None:
            return
        record = self._cost(model.name, pending["params"], parsed, pending["region"], pending["writes"])
        record.reported, record.reported_detail = _reported(parsed)
        self.history.append(record)
        for measurement in self._active:
            measurement.calls.append(record)

    # -- costing --

    def _key_of(self, region: str, table: str, item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self._moto.key_attributes(region, table) if name in item}

    def _writes_of(self, operation: str, params: Mapping[str, Any], region: str) -> list[_Write]:
        writes: list[tuple[str, str, dict[str, Any]]] = []
        if operation == "PutItem":
            table = params["TableName"]
            writes.append(("Put", table, self._key_of(region, table, params["Item"])))
        elif operation in ("UpdateItem", "DeleteItem"):
            writes.append((operation.removesuffix("Item"), params["TableName"], dict(params["Key"])))
        elif operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((action, body),) = entry.items()
                key = body["Key"] if "Key" in body else self._key_of(region, body["TableName"], body["Item"])
                writes.append((action, body["TableName"], dict(key)))
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        writes.append(
                            ("Put", table, self._key_of(region, table, request["PutRequest"]["Item"]))
                        )
                    else:
                        writes.append(("Delete", table, dict(request["DeleteRequest"]["Key"])))
        return [
            _Write(action, table, key, self._moto.item(region, table, key)) for action, table, key in writes
        ]

    def _cost(
        self,
        operation: str,
        params: Mapping[str, Any],
        parsed: Mapping[str, Any],
        region: str,
        writes: list[_Write],
    ) -> CallRecord:
        table = str(params.get("TableName") or ",".join(params.get("RequestItems", {})) or "")
        if operation == "TransactWriteItems":
            table = ",".join(sorted({w.table for w in writes}))
        record = CallRecord(operation, table, error=(parsed.get("Error") or {}).get("Code"))
        if operation == "GetItem":
            item = self._moto.item(region, table, params["Key"])
            record.rcu = read_units(item_size(item), consistent=bool(params.get("ConsistentRead")))
        elif operation == "BatchGetItem":
            self._cost_batch_get(record, params, parsed, region)
        elif operation == "TransactGetItems":
            for entry in params["TransactItems"]:
                get = entry["Get"]
                item = self._moto.item(region, get["TableName"], get["Key"])
                record.rcu += read_units(item_size(item), transactional=True)
        elif operation == "Query":
            self._cost_query(record, operation, params, parsed, region)
        elif writes:
            self._cost_writes(record, operation, region, writes)
        else:
            record.notes.append(f"{operation} is not costed by this meter")
        return record

    def _cost_batch_get(
        self, record: CallRecord, params: Mapping[str, Any], parsed: Mapping[str, Any], region: str
    ) -> None:
        unprocessed = parsed.get("UnprocessedKeys") or {}
        for table, request in params["RequestItems"].items():
            skipped = unprocessed.get(table, {}).get("Keys", [])
            sizes = [
                item_size(self._moto.item(region, table, key))
                for key in request["Keys"]
                if key not in skipped
            ]
            record.rcu += batch_read_units(sizes, consistent=bool(request.get("ConsistentRead")))

    def _cost_query(
        self,
        record: CallRecord,
        operation: str,
        params: Mapping[str, Any],
        parsed: Mapping[str, Any],
        region: str,
    ) -> None:
        consistent = bool(params.get("ConsistentRead"))
        trimmed = any(params.get(p) for p in ("FilterExpression", "ProjectionExpression", "AttributesToGet"))
        trimmed = trimmed or params.get("Select", "ALL_ATTRIBUTES") not in (
            "ALL_ATTRIBUTES",
            "ALL_PROJECTED_ATTRIBUTES",
        )
        if not trimmed:
            items = list(parsed.get("Items", []))
        elif operation == "Query" and "KeyConditionExpression" in params:
            items = self._items_read(params, region)
            record.notes.append("items read found by re-running the query without filter/projection")
        else:
            items = list(parsed.get("Items", []))
            record.notes.append("lower bound: filtered or projected items are not all visible")
        units = query_read_units([item_size(i) for i in items], consistent=consistent)
        if params.get("IndexName"):
            record.gsi_rcu = units
        else:
            record.rcu = units

    def _items_read(self, params: Mapping[str, Any], region: str) -> list[dict[str, Any]]:
        """The items a Query read: the same key condition, start key and limit, nothing trimmed."""
        if self._shadow is None:
            import boto3

            self._shadow = boto3.client("dynamodb", region_name=region)
        condition = params["KeyConditionExpression"]
        used = set(_PLACEHOLDER.findall(condition))
        shadow: dict[str, Any] = {
            name: params[name]
            for name in (
                "TableName",
                "IndexName",
                "ExclusiveStartKey",
                "Limit",
                "ScanIndexForward",
                "ConsistentRead",
            )
            if name in params
        }
        shadow["KeyConditionExpression"] = condition
        names = {k: v for k, v in (params.get("ExpressionAttributeNames") or {}).items() if k in used}
        values = {k: v for k, v in (params.get("ExpressionAttributeValues") or {}).items() if k in used}
        if names:
            shadow["ExpressionAttributeNames"] = names
        if values:
            shadow["ExpressionAttributeValues"] = values
        items: list[dict[str, Any]] = self._shadow.query(**shadow).get("Items", [])
        return items

    def _cost_writes(self, record: CallRecord, operation: str, region: str, writes: list[_Write]) -> None:
        transactional = operation == "TransactWriteItems"
        if transactional and record.error:
            record.notes.append(f"transaction cancelled ({record.error}): AWS reports no capacity; counted 0")
            return
        if record.error == "ConditionalCheckFailedException":
            (write,) = writes
            record.wcu = write_units(item_size(write.before))
            record.notes.append("condition failed: billed the existing item, no index write")
            return
        if record.error:
            record.notes.append(f"failed ({record.error}): counted 0")
            return
        for write in writes:
            after = None if write.action == "Delete" else self._moto.item(region, write.table, write.key)
            if write.action == "ConditionCheck":
                record.wcu += write_units(item_size(write.before), transactional=True)
                continue
            record.wcu += item_write_units(write.before, after, transactional=transactional)
            for index in self._moto.indexes(region, write.table):
                units = index_write_units(index, write.before, after)
                if units:
                    record.gsi_wcu += units
                    record.notes.append(
                        f"{index.name}: {units:g} WCU ({write.action} {_key_text(write.key)})"
                    )


def _key_text(key: Mapping[str, Mapping[str, Any]]) -> str:
    return "/".join(str(next(iter(v.values()))) for v in key.values())
