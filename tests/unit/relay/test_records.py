"""Record rules: collection and key names, JSON values, sizes."""

from __future__ import annotations

import math

import pytest

from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.relay.records import (
    MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH,
    InvalidRecord,
    check_collection,
    check_key,
    encode_value,
    make_record,
)


@pytest.mark.parametrize("name", ["a", "metrics.cpu", "A-Z_0.9", "x" * 64])
def test_collection_names_of_the_documented_set_are_accepted(name: str) -> None:
    assert check_collection(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "with space", "a/b", "ü", "a\n", "a*"])
def test_other_collection_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        check_collection(name)
    assert caught.value.reason == "invalid-collection"


def test_a_key_of_512_utf8_bytes_is_accepted_and_513_is_refused() -> None:
    # Given keys made of 2-byte characters / Then the byte length decides, not the character count
    assert check_key("é" * 256) == "é" * 256
    with pytest.raises(InvalidRecord, match="513 UTF-8 bytes"):
        check_key("é" * 256 + "x")


@pytest.mark.parametrize("key", ["", "a\x00b", "tab\there", "del\x7f", "c1\x85", "lone\ud800"])
def test_empty_keys_control_characters_and_lone_surrogates_are_refused(key: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        check_key(key)
    assert caught.value.reason == "invalid-key"


def test_values_encode_as_compact_utf8_json_keeping_key_order() -> None:
    assert encode_value({"b": 1, "a": ["é", None, True, 1.5]}) == '{"b":1,"a":["é",null,true,1.5]}'


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(number: float) -> None:
    with pytest.raises(InvalidRecord, match="finite"):
        encode_value({"x": [number]})


def test_a_value_of_exactly_64_kib_is_accepted_and_one_byte_more_is_refused() -> None:
    # Given a string whose JSON (with its two quotes) is exactly the limit
    fits = "x" * (MAX_VALUE_BYTES - 2)
    assert len(encode_value(fits)) == MAX_VALUE_BYTES
    with pytest.raises(InvalidRecord) as caught:
        encode_value(fits + "x")
    assert caught.value.reason == "value-too-large"


def test_nesting_is_bounded() -> None:
    deep: object = 1
    for _ in range(MAX_VALUE_DEPTH):
        deep = [deep]
    assert encode_value(deep)
    with pytest.raises(InvalidRecord, match="nests deeper"):
        encode_value([deep])


@pytest.mark.parametrize("value", [{1: "int key"}, {"set": {1, 2}}, b"bytes", 10**38, -(10**38)])
def test_non_json_data_and_unbounded_integers_are_refused(value: object) -> None:
    with pytest.raises(InvalidRecord) as caught:
        encode_value(value)
    assert caught.value.reason == "invalid-value"


def test_make_record_builds_a_tombstone_without_a_value() -> None:
    record = make_record(
        record_id=new_id(IdPrefix.RECORD), collection="c", key="k", hlc="1764512345678-0001", deleted=True
    )
    assert record.deleted
    assert record.value_json is None
    assert record.value() is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"record_id": "rec_nope"}, "invalid-record-id"),
        ({"record_id": new_id(IdPrefix.AGENT)}, "invalid-record-id"),
        ({"hlc": "yesterday"}, "invalid-hlc"),
        ({"collection": "no/slash"}, "invalid-collection"),
    ],
)
def test_make_record_names_the_first_rule_broken(fields: dict[str, str], reason: str) -> None:
    base = {"record_id": new_id(IdPrefix.RECORD), "collection": "c", "key": "k", "hlc": "1764512345678-0001"}
    with pytest.raises(InvalidRecord) as caught:
        make_record(**{**base, **fields}, value=1)
    assert caught.value.reason == reason
