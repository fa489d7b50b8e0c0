"""The sync worker against an in-memory relay: acks, trimming, backoff, Retry-After, dead letters."""

from __future__ import annotations

import random

from fleetlink.agent.daemon import HeartbeatService, Supervisor
from fleetlink.agent.relay.service import RelayService
from fleetlink.agent.relay.store import RecordStore
from fleetlink.cli.operator.agents import relay_lag
from fleetlink.client.backoff import Backoff
from fleetlink.client.http import FleetlinkConnectionError
from fleetlink.contract.agents import HeartbeatAck
from fleetlink.core.clock import FixedClock
from fleetlink.core.heartbeat import Heartbeat
from tests.fakes.relay_api import FakeRelayApi, FakeRelayCloud, relay_error
from tests.unit.relay.conftest import NODE


def service(store: RecordStore, api: FakeRelayApi, clock: FixedClock, **options: object) -> RelayService:
    worker = RelayService(
        store,
        api,
        clock=clock.now_ms,
        backoff=Backoff(base_s=1.0, max_s=60.0, rand=random.Random(7).random),
        **options,
    )
    worker.start()
    return worker


def test_a_single_write_goes_out_at_once_through_immediate(
    store: RecordStore, api: FakeRelayApi, cloud: FakeRelayCloud, clock: FixedClock
) -> None:
    worker = service(store, api, clock)
    record = store.set("c", "k", {"v": 1})
    worker.step()
    assert api.calls == [("immediate", [record.record_id])]
    assert cloud.state() == {(NODE, "c", "k"): (record.record_id, record.hlc, '{"v":1}')}
    assert store.health().queue_size == 0


def test_a_backlog_drains_in_batches_of_at_most_500(
    store: RecordStore, api: FakeRelayApi, clock: FixedClock
) -> None:
    for i in range(1_201):
        store.set("c", f"k{i:04}", i)
    worker = service(store, api, clock)
    assert worker.drain(max_rounds=10)
    assert [(kind, len(ids)) for kind, ids in api.calls] == [("batch", 500), ("batch", 500), ("batch", 201)]


def test_a_batch_stays_under_the_byte_budget(
    store: RecordStore, api: FakeRelayApi, clock: FixedClock
) -> None:
    for i in range(10):
        store.set("c", f"k{i}", "x" * 60_000)
    worker = service(store, api, clock, max_batch_bytes=200_000)
    assert worker.drain(max_rounds=10)
    assert [len(ids) for _, ids in api.calls] == [3, 3, 3, 1]


def test_duplicate_and_stale_answers_trim_the_outbox(
    store: RecordStore, api: FakeRelayApi, cloud: FakeRelayCloud, clock: FixedClock
) -> None:
    # Given the cloud already holds the record (its first answer was lost) and a newer one of another key
    record = store.set("c", "a", 1)
    worker = service(store, api, clock)
    api.lose_answers = 1
    worker.step()
    assert store.health().queue_size == 1
    # When the worker sends it again after the backoff / Then the duplicate answer trims the outbox
    clock.advance(60_000)
    worker.step()
    assert store.health().queue_size == 0
    assert cloud.outcomes[(record.record_id, "duplicate")] == 1
    assert cloud.applied_twice() == []


def _attempts_within(seconds: float, backoff: Backoff) -> int:
    """How many attempts fit in ``seconds`` when each failure waits ``backoff``'s next delay."""
    attempts, elapsed = 1, backoff.delay_s(1)
    while elapsed < seconds:
        attempts += 1
        elapsed += backoff.delay_s(attempts)
    return attempts


def test_while_unreachable_requests_are_bounded_by_exponential_backoff(
    store: RecordStore, api: FakeRelayApi, clock: FixedClock
) -> None:
    # Given a cloud unreachable for 10 minutes while the node writes one record a second
    worker = service(store, api, clock)
    api.errors = [FleetlinkConnectionError("refused")] * 10_000
    for second in range(600):
        store.set("c", f"k{second}", second)
        worker.step()
        clock.advance(1_000)
    # Then the worker tried only as often as its backoff (1 s doubling to 60 s, full jitter) lets it:
    # at least as often as the ceilings leave room for, at most as often as this seeded jitter does
    attempts = len(api.calls)
    ceilings = Backoff(base_s=1.0, max_s=60.0, rand=lambda: 1.0)
    seeded = Backoff(base_s=1.0, max_s=60.0, rand=random.Random(7).random)
    assert _attempts_within(600, ceilings) <= attempts <= _attempts_within(600, seeded)
    health = store.health()
    assert health.queue_size == 600
    assert health.consecutive_failures == attempts
    assert health.last_error is not None
    assert "refused" in health.last_error
    # When the cloud is back / Then everything drains and the failure count resets
    api.errors = []
    clock.advance(120_000)
    assert worker.drain(max_rounds=10)
    assert store.health().consecutive_failures == 0


def test_retry_after_is_honoured(store: RecordStore, api: FakeRelayApi, clock: FixedClock) -> None:
    store.set("c", "a", 1)
    worker = service(store, api, clock)
    api.errors = [relay_error(429, "throttled", retry_after_s=30)]
    assert worker.step() >= 30
    # Then nothing is sent before 30 s have passed, and it goes out after
    clock.advance(29_000)
    worker.step()
    assert len(api.calls) == 1
    clock.advance(1_000)
    worker.step()
    assert len(api.calls) == 2
    assert store.health().queue_size == 0


def test_a_rejected_record_becomes_a_dead_letter_and_is_not_retried(
    store: RecordStore, api: FakeRelayApi, clock: FixedClock, wall: FixedClock
) -> None:
    # Given a node whose wall clock is an hour ahead of the server's
    wall.advance(3_600_000)
    record = store.set("c", "a", 1)
    worker = service(store, api, clock)
    worker.step()
    health = store.health()
    assert (health.queue_size, health.dead_letters) == (0, 1)
    assert store.dead_letters()[0].record_id == record.record_id
    assert store.dead_letters()[0].reason.startswith("hlc-ahead")
    worker.step()
    assert len(api.calls) == 1


def test_records_answered_retry_stay_queued_and_go_again_after_a_backoff(
    store: RecordStore, api: FakeRelayApi, cloud: FakeRelayCloud, clock: FixedClock
) -> None:
    a, b = store.set("c", "a", 1), store.set("c", "b", 2)
    api.throttle_once = {b.record_id}
    worker = service(store, api, clock)
    delay = worker.step()
    assert [e.record_id for e in store.pending(limit=10)] == [b.record_id]
    assert delay > 0
    clock.advance(int(delay * 1000))
    worker.step()
    assert store.health().queue_size == 0
    assert set(cloud.state()) == {(NODE, "c", "a"), (NODE, "c", "b")}
    assert a.record_id != b.record_id


def test_a_batch_refused_as_a_whole_is_resent_one_by_one_to_isolate_the_culprit(
    store: RecordStore, api: FakeRelayApi, cloud: FakeRelayCloud, clock: FixedClock
) -> None:
    records = [store.set("c", f"k{i}", i) for i in range(4)]
    api.poison = {records[2].record_id}
    worker = service(store, api, clock)
    assert worker.drain(max_rounds=20)
    assert [kind for kind, _ in api.calls] == ["batch", "immediate", "immediate", "immediate", "immediate"]
    assert [d.record_id for d in store.dead_letters()] == [records[2].record_id]
    assert store.dead_letters()[0].reason.startswith("422")
    assert len(cloud.state()) == 3


def test_a_write_made_while_its_older_version_is_in_flight_is_still_sent(
    store: RecordStore, api: FakeRelayApi, cloud: FakeRelayCloud, clock: FixedClock
) -> None:
    # Given the older version is sent but its answer is lost, then the key is rewritten
    store.set("c", "a", "old")
    worker = service(store, api, clock)
    api.lose_answers = 1
    worker.step()
    newer = store.set("c", "a", "new")
    clock.advance(60_000)
    assert worker.drain(max_rounds=5)
    assert cloud.state()[(NODE, "c", "a")] == (newer.record_id, newer.hlc, '"new"')


def test_a_restarted_worker_keeps_the_backoff_of_the_previous_run(
    store: RecordStore, api: FakeRelayApi, clock: FixedClock
) -> None:
    store.set("c", "a", 1)
    api.errors = [FleetlinkConnectionError("refused")] * 3
    first = service(store, api, clock)
    for _ in range(3):
        clock.advance(int(first.step() * 1000))
    # When a new worker starts during the backoff / Then it waits for it instead of sending at once
    clock.advance(-1)
    second = service(store, api, clock)
    assert second.step() > 0
    assert len(api.calls) == 3


def test_heartbeat_metrics_show_a_lagging_node(
    store: RecordStore, api: FakeRelayApi, clock: FixedClock
) -> None:
    worker = service(store, api, clock)
    store.set("c", "a", "x")
    clock.advance(90_000)
    worker.on_heartbeat(
        HeartbeatAck(
            server_time=clock.now_ms() + 2_000,
            heartbeat_interval_s=60,
            pending_executions=0,
            tunnels_version=0,
            renewed=[],
            cancel=[],
        )
    )
    metrics = worker.heartbeat_metrics()
    assert metrics["relay_queue_size"] == 1
    assert metrics["relay_oldest_age_s"] == 90.0
    assert metrics["relay_bytes_pending"] > 0
    assert metrics["relay_dead_letters"] == 0
    assert metrics["relay_clock_offset_s"] == 2.0
    assert all(isinstance(value, float) for value in metrics.values())
    # and the server accepts them as heartbeat metrics (names of at most 24 characters)
    assert Heartbeat(metrics=metrics).metrics == metrics


def test_under_the_daemon_a_local_write_wakes_the_relay_service(
    store: RecordStore, api: FakeRelayApi, clock: FixedClock
) -> None:
    # Given the relay service inside the agent daemon's supervisor
    worker = service(store, api, clock)
    supervisor = Supervisor(HeartbeatService(api, NODE, first_beat_jitter_s=0), [worker])  # type: ignore[arg-type]
    worker.start()
    slot_wake = supervisor._slots["relay"].wake
    slot_wake.clear()
    # When a program writes a record locally
    store.set("inv", "k", 1)
    # Then the supervisor is asked to run the relay's next round now
    assert slot_wake.is_set()


def test_the_cli_shows_relay_lag_from_heartbeat_metrics() -> None:
    # Given heartbeat metrics of a synced node and of one that is behind
    synced = {"relay_queue_size": 0.0, "relay_oldest_age_s": 0.0}
    behind = {
        "relay_queue_size": 12.0,
        "relay_oldest_age_s": 300.0,
        "relay_failures": 4.0,
    }
    # When shown in `fleetlink agents ls` / Then ok, or what waits and why; "-" without relay metrics
    assert relay_lag(synced) == "ok"
    assert relay_lag(behind) == "12 queued, oldest 5m00s, 4 failures"
    assert relay_lag({"load1": 0.1}) == "-"
