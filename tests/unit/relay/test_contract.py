"""Wire models of relay sync: what fails a request as a whole, and what is left to per-record answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from fleetlink.agent.relay.store import wire_size
from fleetlink.client.http import encode_json
from fleetlink.contract.relay import (
    BatchRequest,
    CollectionPolicy,
    QueryRequest,
    RecordStatus,
    RelayRecord,
    TagReaders,
)
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.relay.records import InvalidRecord


def body(**fields: Any) -> dict[str, Any]:
    return {
        "record_id": new_id(IdPrefix.RECORD),
        "collection": "c",
        "key": "k",
        "hlc": "1764512345678-0001",
        **fields,
    }


def test_a_record_needs_a_value_or_deleted() -> None:
    with pytest.raises(ValidationError, match="needs a value"):
        RelayRecord.model_validate(body())


def test_a_null_value_is_a_value() -> None:
    assert RelayRecord.model_validate(body(value=None)).wire()["value"] is None


def test_a_deleted_record_with_a_value_is_refused() -> None:
    with pytest.raises(ValidationError, match="no value"):
        RelayRecord.model_validate(body(deleted=True, value=1))


@pytest.mark.parametrize(
    "fields",
    [
        {"hlc": "1764512345678-1"},
        {"collection": "a b"},
        {"key": "a\x00"},
        {"key": "k" * 513},
        {"record_id": "x"},
    ],
)
def test_bad_shapes_fail_the_request(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RelayRecord.model_validate(body(value=1, **fields))


def test_content_rules_are_left_to_the_per_record_answer() -> None:
    # Given a record whose JSON carries NaN and an oversized value / Then the shape parses
    record = RelayRecord.model_validate_json(json.dumps(body(value=float("nan"))))
    big = RelayRecord.model_validate(body(value="x" * 70_000))
    # When turned into core records / Then each is rejected with its reason
    with pytest.raises(InvalidRecord, match="finite"):
        record.to_core()
    with pytest.raises(InvalidRecord) as caught:
        big.to_core()
    assert caught.value.reason == "value-too-large"


@pytest.mark.parametrize("count", [0, 501])
def test_a_batch_holds_1_to_500_records(count: int) -> None:
    with pytest.raises(ValidationError):
        BatchRequest.model_validate({"records": [body(value=i) for i in range(count)]})


@pytest.mark.parametrize(
    "fields",
    [{"limit": 0}, {"limit": 101}, {"node_id": "rec_x"}, {"updated_since": -1}, {"key_prefix": "\x01"}],
)
def test_query_bounds(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        QueryRequest.model_validate({"collection": "c", **fields})


def test_query_defaults() -> None:
    query = QueryRequest(collection="c")
    assert (query.limit, query.include_deleted, query.cursor) == (50, False, None)


def test_policy_is_fleet_or_tags() -> None:
    assert CollectionPolicy.model_validate({}).readers == "fleet"
    tagged = CollectionPolicy.model_validate({"readers": {"tag": {"env": "prod"}}}).readers
    assert isinstance(tagged, TagReaders)
    assert tagged.tag == {"env": "prod"}
    for bad in ({"readers": "everyone"}, {"readers": {"tag": {}}}):
        with pytest.raises(ValidationError):
            CollectionPolicy.model_validate(bad)


def test_only_applied_duplicate_and_stale_acknowledge() -> None:
    assert {s for s in RecordStatus if s.acknowledges} == {"applied", "duplicate", "stale"}


@pytest.mark.parametrize("value_json", ['{"é":[1,2.5,"ß"]}', None])
def test_the_store_counts_a_record_exactly_as_the_client_encodes_it(value_json: str | None) -> None:
    fields = body(key="ключ/1")
    wire = body(**fields, **({"deleted": True} if value_json is None else {"value": json.loads(value_json)}))
    record = RelayRecord.model_validate(wire)
    expected = len(encode_json(record.wire()))
    assert wire_size(record.record_id, record.collection, record.key, record.hlc, value_json) == expected
