"""Collection read policy: the whole fleet, or agents carrying all the given tags."""

from __future__ import annotations

from fleetlink.core.relay.policy import may_read


def test_fleet_collections_are_readable_by_every_agent() -> None:
    assert may_read("fleet", {})


def test_a_tagged_collection_needs_every_tag_with_its_value() -> None:
    readers = {"env": "prod", "team": "ops"}
    assert may_read(readers, {"env": "prod", "team": "ops", "extra": "x"})
    assert not may_read(readers, {"env": "prod"})
    assert not may_read(readers, {"env": "dev", "team": "ops"})
