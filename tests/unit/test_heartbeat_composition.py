"""The heartbeat answer is composed from each capability's part; a part nobody gives keeps its default."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fleetlink.core.access import Caller
from fleetlink.core.clock import FixedClock
from fleetlink.core.errors import Forbidden, Unauthenticated
from fleetlink.core.heartbeat import Heartbeat, HeartbeatParts, HeartbeatService


@dataclass(frozen=True)
class Agent:
    agent_id: str
    tunnels_version: int = 0


class Records:
    """A contributor that records what it saw and gives a fixed part."""

    def __init__(self, part: HeartbeatParts) -> None:
        self.part = part
        self.seen: list[tuple[str, int]] = []

    def on_heartbeat(self, caller: Caller, command: Heartbeat, now_ms: int) -> HeartbeatParts:
        self.seen.append((caller.agent_id, now_ms))
        return self.part


class Presence:
    """A presence recorder that records what it saw, or refuses every sequence (a stale one)."""

    def __init__(self, *, refuse_sequences: bool = False) -> None:
        self.refuse_sequences = refuse_sequences
        self.seen: list[tuple[str, int, int | None]] = []

    def record_presence(self, caller: Caller, command: Heartbeat, now_ms: int, sequence: int | None) -> None:
        if self.refuse_sequences and sequence is not None:
            raise Unauthenticated("stale", code="heartbeat-sequence-stale")
        self.seen.append((caller.agent_id, now_ms, sequence))


def test_parts_of_every_contributor_are_merged_and_the_rest_keep_defaults() -> None:
    # Given presence and a tasks contributor that gives its part
    presence, tasks = Presence(), Records({"pending_executions": 2, "renewed": ["exe_1"], "cancel": []})
    service = HeartbeatService(FixedClock(5_000), 60, presence, [tasks])
    # When an agent sends its heartbeat with a sequence
    result = service.heartbeat(Agent("agt_1"), "agt_1", Heartbeat(), sequence=7)
    # Then both saw it at the same time (presence with the sequence), the answer carries the tasks
    # part, tunnels_version its default
    assert presence.seen == [("agt_1", 5_000, 7)]
    assert tasks.seen == [("agt_1", 5_000)]
    assert (result.pending_executions, result.renewed, result.cancel) == (2, ["exe_1"], [])
    assert (result.server_time, result.heartbeat_interval_s, result.tunnels_version) == (5_000, 60, 0)


def test_a_heartbeat_for_another_agent_reaches_no_contributor() -> None:
    # Given presence and a contributor
    presence, tasks = Presence(), Records({})
    service = HeartbeatService(FixedClock(5_000), 60, presence, [tasks])
    # When an agent sends a heartbeat for another agent
    with pytest.raises(Forbidden):
        service.heartbeat(Agent("agt_1"), "agt_2", Heartbeat())
    # Then nothing was recorded
    assert (presence.seen, tasks.seen) == ([], [])


def test_a_refused_sequence_reaches_no_contributor() -> None:
    # Given presence that refuses the heartbeat's sequence (not greater than the last one)
    presence, tasks = Presence(refuse_sequences=True), Records({"pending_executions": 1})
    service = HeartbeatService(FixedClock(5_000), 60, presence, [tasks])
    # When the heartbeat arrives / Then it is refused and no contributor acted on it
    with pytest.raises(Unauthenticated):
        service.heartbeat(Agent("agt_1"), "agt_1", Heartbeat(), sequence=3)
    assert tasks.seen == []
