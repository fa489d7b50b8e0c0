"""The node's record store: a simple API, one outbox entry per pending key, a clock that never goes back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleetlink.agent.relay.store import RecordStore
from fleetlink.core.clock import FixedClock
from fleetlink.core.relay.hlc import Hlc
from fleetlink.core.relay.records import InvalidRecord


def test_set_then_get_returns_the_json_value(store: RecordStore) -> None:
    store.set("config", "ui", {"theme": "dark", "n": [1, 2.5]})
    assert store.get("config", "ui") == {"theme": "dark", "n": [1, 2.5]}


def test_get_of_a_missing_key_returns_the_default(store: RecordStore) -> None:
    assert store.get("config", "nope", default=42) == 42


def test_delete_leaves_a_tombstone_that_hides_the_value(store: RecordStore) -> None:
    store.set("config", "ui", 1)
    assert store.delete("config", "ui") is True
    assert store.get("config", "ui") is None
    tombstone = store.get_record("config", "ui")
    assert tombstone is not None
    assert tombstone.deleted


def test_deleting_what_is_not_there_writes_nothing(store: RecordStore) -> None:
    assert store.delete("config", "never") is False
    assert store.get_record("config", "never") is None
    assert store.health().queue_size == 0


def test_list_is_in_key_order_with_an_exact_prefix_match(store: RecordStore) -> None:
    for key in ["b/2", "a/1", "b/1", "b", "b0", "c"]:
        store.set("files", key, key)
    store.delete("files", "b/2")
    assert [r.key for r in store.list("files", prefix="b/")] == ["b/1"]
    assert [r.key for r in store.list("files", prefix="b/", include_deleted=True)] == ["b/1", "b/2"]
    assert store.list_all("files") == {k: k for k in ["a/1", "b", "b/1", "b0", "c"]}
    assert store.collections() == {"files": 5}


def test_invalid_input_raises_and_writes_nothing(store: RecordStore) -> None:
    for call in (
        lambda: store.set("bad name", "k", 1),
        lambda: store.set("c", "k\n", 1),
        lambda: store.set("c", "k", float("nan")),
        lambda: store.set("c", "k", "x" * 70_000),
    ):
        with pytest.raises(InvalidRecord):
            call()
    assert store.health().queue_size == 0
    assert store.last_hlc() is None


def test_each_write_queues_its_record_and_a_rewrite_replaces_the_pending_entry(
    store: RecordStore, clock: FixedClock
) -> None:
    # Given two keys written, then the first rewritten a second later
    first = store.set("c", "a", 1)
    store.set("c", "b", 2)
    clock.advance(1000)
    latest = store.set("c", "a", 3)
    # Then the queue holds one entry per key, in first-write order, the rewrite carrying the latest record
    pending = store.pending(limit=10)
    assert [(e.key, e.record_id) for e in pending] == [("a", latest.record_id), ("b", pending[1].record_id)]
    assert pending[0].value_json == "3"
    assert pending[0].enqueued_at == first.updated_at


def test_acknowledged_records_leave_the_outbox_and_are_marked_synced(
    store: RecordStore, clock: FixedClock
) -> None:
    store.set("c", "a", 1)
    store.settle(acknowledged=store.pending(limit=1), at=clock.now_ms())
    synced = store.get_record("c", "a")
    assert store.pending(limit=10) == []
    assert synced is not None
    assert synced.synced_at == clock.now_ms()


def test_an_acknowledgement_of_a_superseded_record_keeps_the_newer_one_pending(store: RecordStore) -> None:
    # Given a record sent, then rewritten before its answer arrived
    store.set("c", "a", 1)
    sent = store.pending(limit=1)
    newer = store.set("c", "a", 2)
    # When the first one is acknowledged / Then the rewrite is still queued
    store.settle(acknowledged=sent)
    assert [e.record_id for e in store.pending(limit=10)] == [newer.record_id]


def test_rejected_records_become_dead_letters(store: RecordStore) -> None:
    store.set("c", "a", 1)
    store.settle(rejected={store.pending(limit=1)[0]: "hlc-ahead: too far"})
    assert store.health().queue_size == 0
    assert store.health().dead_letters == 1
    assert store.dead_letters()[0].reason == "hlc-ahead: too far"


def test_pending_stops_at_the_byte_budget_but_always_returns_one(store: RecordStore) -> None:
    for key in "abc":
        store.set("c", key, "x" * 1000)
    assert len(store.pending(limit=10, max_bytes=2500)) == 2
    assert len(store.pending(limit=10, max_bytes=10)) == 1


def test_health_reports_queue_bytes_and_age(store: RecordStore, clock: FixedClock) -> None:
    store.set("c", "a", "x")
    clock.advance(5_000)
    health = store.health()
    assert health.queue_size == 1
    assert health.bytes_pending > 0
    assert health.oldest_pending_age_s == 5.0


def test_the_store_syncs_every_commit_by_default(store: RecordStore) -> None:
    # FULL is 2: a write that returned survives a power loss
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_clock_never_goes_back_across_a_restart_and_a_wall_clock_step_back(
    open_store: Callable[[], RecordStore], wall: FixedClock
) -> None:
    # Given writes, then a restart with the wall clock stepped back an hour
    store = open_store()
    before = [Hlc.parse(store.set("c", str(i), i).hlc) for i in range(3)]
    store.close()
    wall.advance(-3_600_000)
    reopened = open_store()
    # When the node writes again / Then every hlc is higher than any before
    after = [Hlc.parse(reopened.set("c", str(i), i).hlc) for i in range(3)]
    assert before + after == sorted(set(before + after))
    assert reopened.last_hlc() == after[-1]
