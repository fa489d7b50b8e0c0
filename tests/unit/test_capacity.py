"""DynamoDB item sizes and request units, against the AWS Developer Guide's rules and examples.

Sources: "DynamoDB item sizes and formats" (CapacityUnitCalculations) and "DynamoDB read and write
operations" (read-write-operations), Amazon DynamoDB Developer Guide.
"""

from __future__ import annotations

import pytest
from bench.capacity import (
    IndexSchema,
    batch_read_units,
    index_write_units,
    item_size,
    item_write_units,
    query_read_units,
    read_units,
    value_size,
    write_units,
)

KB = 1024
GSI = IndexSchema("gsi1", key_attributes=("gsi1pk", "gsi1sk"), table_key_attributes=("pk", "sk"))
KEYS_ONLY_GSI = IndexSchema(
    "gsi2", key_attributes=("gsi1pk", "gsi1sk"), table_key_attributes=("pk", "sk"), projection="KEYS_ONLY"
)
INDEXED = {
    "pk": {"S": "AGENT#1"},
    "sk": {"S": "STATE#PROFILE"},
    "gsi1pk": {"S": "AGENTS#3"},
    "gsi1sk": {"S": "agt_1"},
    "name": {"S": "web-1"},
}


# --- item size -----------------------------------------------------------------------------


def test_string_counts_utf8_bytes_of_name_and_value() -> None:
    # Given a string attribute with a two-byte character / When sized / Then name + UTF-8 bytes
    assert item_size({"name": {"S": "café"}}) == 4 + 5


def test_number_counts_one_byte_per_two_significant_digits_plus_one() -> None:
    # Given 27 (2 digits) and 123456 (6 digits) / When sized / Then 1+1 and 3+1 bytes
    assert (value_size({"N": "27"}), value_size({"N": "123456"})) == (2, 4)


def test_number_trims_leading_and_trailing_zeroes() -> None:
    # Given the same significant digits with zeroes around them / When sized / Then the same size
    assert value_size({"N": "001200"}) == value_size({"N": "0.0012"}) == value_size({"N": "12"}) == 2


def test_binary_counts_raw_bytes_not_base64() -> None:
    # Given 3 raw bytes, as bytes and as their base64 text / When sized / Then 3 bytes either way
    assert value_size({"B": b"\x00\x01\x02"}) == value_size({"B": "AAEC"}) == 3


@pytest.mark.parametrize("value", [{"BOOL": True}, {"NULL": True}])
def test_boolean_and_null_are_one_byte(value: dict[str, object]) -> None:
    # Given a boolean or null / When sized / Then name + 1 byte
    assert item_size({"flag": value}) == 4 + 1


def test_empty_map_is_three_bytes_of_overhead() -> None:
    # Given an empty map / When sized / Then name + 3 bytes
    assert item_size({"tags": {"M": {}}}) == 4 + 3


def test_map_adds_one_byte_per_element_to_its_names_and_values() -> None:
    # Given a map {"a": "xy"} / When sized / Then name + 3 + (1 name byte + 2 value bytes + 1)
    assert item_size({"m": {"M": {"a": {"S": "xy"}}}}) == 1 + 3 + (1 + 2 + 1)


def test_list_adds_one_byte_per_element() -> None:
    # Given a list ["ab", 1] / When sized / Then name + 3 + (2 + 1) + (2 + 1)
    assert item_size({"l": {"L": [{"S": "ab"}, {"N": "1"}]}}) == 1 + 3 + (2 + 1) + (2 + 1)


def test_string_set_is_the_sum_of_its_members() -> None:
    # Given a string set / When sized / Then name + the members' bytes
    assert item_size({"ss": {"SS": ["a", "bcd"]}}) == 2 + 1 + 3


def test_item_is_the_sum_of_its_attributes() -> None:
    # Given an item of a string and a number / When sized / Then the sum of both attributes
    assert item_size({"pk": {"S": "A#1"}, "n": {"N": "10"}}) == (2 + 3) + (1 + 2)


# --- read units ----------------------------------------------------------------------------


def test_read_rounds_up_to_4kb_3500_bytes_costs_one_strong_read() -> None:
    # Given a 3,500-byte item (guide: "same throughput as reading a 4 KB item") / Then 1 RCU
    assert read_units(3500, consistent=True) == 1


def test_eventually_consistent_read_costs_half() -> None:
    # Given a 3,500-byte item read eventually consistently / Then 0.5 RCU
    assert read_units(3500) == 0.5


@pytest.mark.parametrize(
    ("consistent", "transactional", "expected"), [(True, False, 2), (False, False, 1), (False, True, 4)]
)
def test_8kb_item_costs_2_strong_1_eventual_4_transactional(
    consistent: bool, transactional: bool, expected: float
) -> None:
    # Given the guide's 8 KB example / When read each way / Then 2, 1 and 4 RCU
    assert read_units(8 * KB, consistent=consistent, transactional=transactional) == expected


def test_getitem_of_10kb_rounds_to_12kb() -> None:
    # Given the guide's 10 KB GetItem ("rounds ... to 12 KB") / When strongly consistent / Then 3 RCU
    assert read_units(10 * KB, consistent=True) == 3


def test_read_of_a_missing_item_still_costs_the_minimum() -> None:
    # Given a key with no item (0 bytes) / When read / Then 1 strong or 0.5 eventual RCU
    assert (read_units(0, consistent=True), read_units(0)) == (1, 0.5)


def test_batch_get_rounds_each_item_up_on_its_own() -> None:
    # Given the guide's BatchGetItem of 1.5 KB and 6.5 KB items ("12 KB (4 KB + 8 KB)") / Then 3 strong RCU
    assert batch_read_units([int(1.5 * KB), int(6.5 * KB)], consistent=True) == 3


def test_query_sums_item_sizes_before_rounding() -> None:
    # Given the same 1.5 KB and 6.5 KB items read by one Query / When summed (8 KB) / Then 2 strong RCU
    assert query_read_units([int(1.5 * KB), int(6.5 * KB)], consistent=True) == 2


# --- write units ---------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "expected"), [(1, 1), (KB, 1), (KB + 1, 2), (int(1.5 * KB), 2)])
def test_write_rounds_up_to_1kb(size: int, expected: float) -> None:
    # Given an item of `size` bytes / When written / Then one WCU per started KB
    assert write_units(size) == expected


def test_transactional_write_costs_double() -> None:
    # Given a 1 KB item written in a transaction (pricing: "two WCUs ... for items up to 1 KB") / Then 2 WCU
    assert write_units(KB, transactional=True) == 2


def test_write_of_nothing_costs_one_unit() -> None:
    # Given a delete of a missing item, or a failed condition on one (0 bytes) / Then 1 WCU
    assert write_units(0) == 1


@pytest.mark.parametrize(("before", "after"), [(500, 1500), (1500, 500)])
def test_update_counts_the_larger_of_before_and_after(before: int, after: int) -> None:
    # Given an update between a ~0.5 KB and a ~1.5 KB version of an item / When costed / Then 2 WCU
    def sized(size: int) -> dict[str, dict[str, str]]:
        return {"pk": {"S": "x"}, "data": {"S": "d" * (size - 3 - 4)}}

    assert item_write_units(sized(before), sized(after)) == 2


# --- index writes --------------------------------------------------------------------------


def test_new_item_with_index_keys_writes_one_index_entry() -> None:
    # Given a new item carrying gsi1's keys / When put / Then 1 index WCU
    assert index_write_units(GSI, None, INDEXED) == 1


def test_item_without_index_keys_writes_nothing_to_a_sparse_index() -> None:
    # Given an item without gsi1's keys / When put / Then no index write
    assert index_write_units(GSI, None, {"pk": {"S": "AGENT#1"}, "sk": {"S": "STATE#PRESENCE"}}) == 0


def test_change_of_an_index_key_costs_a_delete_and_a_put() -> None:
    # Given an indexed item whose gsi1pk changes / When updated / Then 2 index WCU
    assert index_write_units(GSI, INDEXED, {**INDEXED, "gsi1pk": {"S": "AGENTS#4"}}) == 2


def test_change_of_a_projected_attribute_costs_one_index_write() -> None:
    # Given an indexed item (ALL projection) whose name changes / When updated / Then 1 index WCU
    assert index_write_units(GSI, INDEXED, {**INDEXED, "name": {"S": "web-2"}}) == 1


def test_change_of_an_unprojected_attribute_costs_no_index_write() -> None:
    # Given a KEYS_ONLY index and a change to a non-key attribute / When updated / Then no index write
    assert index_write_units(KEYS_ONLY_GSI, INDEXED, {**INDEXED, "name": {"S": "web-2"}}) == 0


def test_delete_of_an_indexed_item_removes_its_entry() -> None:
    # Given an indexed item / When deleted / Then 1 index WCU
    assert index_write_units(GSI, INDEXED, None) == 1
