"""The fleet's tunnel events read no day older than the events' retention, whatever ``since`` says."""

from __future__ import annotations

from bench.capacity import CapacityMeter

from fleetlink.store import keys
from tests.support import Api


def test_fleet_events_since_the_epoch_query_only_retained_days(api: Api) -> None:
    # Given the operator API (tunnel events live 30 days, then TTL removes them)
    meter = CapacityMeter()
    api.operator("tunnels", "GET", "/v1/tunnels/events")  # the function's clients exist
    # When the fleet's events are asked for since the epoch (a hostile or careless query)
    with meter.measure("events since 0") as measured:
        reply = api.operator("tunnels", "GET", "/v1/tunnels/events", query="since=0")
    # Then it answers from the retained days only: at most 31 days x the index shards, not 20,000 days
    assert reply.status == 200, reply.body
    queries = [c for c in measured.calls if c.operation == "Query"]
    assert len(queries) <= 31 * keys.LIST_SHARDS
