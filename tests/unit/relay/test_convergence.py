"""Convergence: any duplication, loss-and-retry and reordering of batches from several nodes leaves the
cloud in the state of applying each node's records in order, and no record is applied twice.

The cloud is taken through the ``relay_cloud`` fixture (``apply_batch(node_id, records)`` and
``state()``), so the same property can drive the relay function on moto as well as the rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetlink.contract.relay import RecordResult, RecordStatus, RelayRecord
from fleetlink.core.clock import FixedClock
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.relay.hlc import Hlc, tick
from fleetlink.core.relay.records import encode_value
from tests.fakes.relay_api import FakeRelayCloud
from tests.unit.relay.conftest import NOW_MS

NODES = ["agt_01JBX0000000000000000000AA", "agt_01JBX0000000000000000000BB", "agt_01JBX0000000000000000000CC"]
#: (node_id, collection, key) -> (record_id, hlc, value JSON or None for a tombstone)
State = dict[tuple[str, str, str], tuple[str, str, str | None]]


class RelayCloud(Protocol):
    def apply_batch(self, node_id: str, records: Sequence[RelayRecord]) -> list[RecordResult]: ...

    def state(self) -> State: ...


@pytest.fixture
def relay_cloud() -> Callable[[], RelayCloud]:
    """A fresh cloud per example (the pure merge rule in memory)."""
    return lambda: FakeRelayCloud(clock=FixedClock(NOW_MS + 60_000).now_ms)


# One write: (collection, key, value or None for a delete, wall-clock step in ms, may be negative).
writes = st.tuples(
    st.sampled_from(["x", "y"]),
    st.sampled_from(["a", "b", "c"]),
    st.none() | st.integers(-5, 5),
    st.integers(-3, 3),
)


def stamped(node_writes: list[tuple[str, str, int | None, int]]) -> list[RelayRecord]:
    """The records a node sends for its writes, each stamped by its hybrid logical clock."""
    records, last, wall = [], None, NOW_MS
    for collection, key, value, step in node_writes:
        wall += step
        last = tick(last, wall)
        body = {"record_id": new_id(IdPrefix.RECORD), "collection": collection, "key": key, "hlc": str(last)}
        records.append(
            RelayRecord.model_validate(
                {**body, "deleted": True} if value is None else {**body, "value": value}
            )
        )
    return records


def in_order(per_node: dict[str, list[RelayRecord]]) -> State:
    """Each node's records applied one after the other: the last write of each key wins."""
    state: State = {}
    for node_id, records in per_node.items():
        for record in records:
            value = None if record.deleted else encode_value(record.value)
            state[(node_id, record.collection, record.key)] = (record.record_id, record.hlc, value)
    return state


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[dict[str, list[RelayRecord]], list[tuple[str, list[RelayRecord]]]]:
    """Nodes with their records, and what reaches the cloud: every batch at least once, plus copies
    (duplicates, a retry after a lost answer) and partial batches (a throttled part), in any order."""
    nodes = NODES[: draw(st.integers(1, len(NODES)))]
    per_node = {node: stamped(draw(st.lists(writes, min_size=1, max_size=12))) for node in nodes}
    batches: list[tuple[str, list[RelayRecord]]] = []
    for node, records in per_node.items():
        start = 0
        while start < len(records):
            size = draw(st.integers(1, 4))
            batches.append((node, records[start : start + size]))
            start += size
    extra = draw(st.lists(st.sampled_from(batches), max_size=len(batches) * 2))
    partial = [
        (
            node,
            [
                r
                for r, keep in zip(
                    records,
                    draw(st.lists(st.booleans(), min_size=len(records), max_size=len(records))),
                    strict=True,
                )
                if keep
            ],
        )
        for node, records in draw(st.lists(st.sampled_from(batches), max_size=3))
    ]
    sent = batches + extra + [(node, records) for node, records in partial if records]
    return per_node, draw(st.permutations(sent))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries())
def test_any_delivery_order_converges_to_in_order_application(
    relay_cloud: Callable[[], RelayCloud],
    case: tuple[dict[str, list[RelayRecord]], list[tuple[str, list[RelayRecord]]]],
) -> None:
    per_node, sent = case
    cloud = relay_cloud()
    applied: Counter[str] = Counter()
    for node_id, records in sent:
        results = cloud.apply_batch(node_id, records)
        # Then each answer is in request order and acknowledges the record
        assert [r.record_id for r in results] == [r.record_id for r in records]
        assert all(r.status.acknowledges for r in results)
        applied.update(r.record_id for r in results if r.status is RecordStatus.APPLIED)
    assert cloud.state() == in_order(per_node)
    assert max(applied.values()) == 1


def test_hlcs_of_the_generated_writes_increase_per_node() -> None:
    # Given writes with the wall clock stepping back / Then the stamps still increase (the premise above)
    records = stamped([("x", "a", 1, 0), ("x", "a", 2, -3), ("x", "b", None, -1), ("x", "a", 3, 2)])
    hlcs = [Hlc.parse(r.hlc) for r in records]
    assert hlcs == sorted(set(hlcs))
