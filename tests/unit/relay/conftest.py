"""Relay unit fixtures: a record store on a real SQLite file with clocks tests move, and the cloud."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetlink.agent.relay.store import RecordStore
from fleetlink.core.clock import FixedClock
from tests.fakes.relay_api import FakeRelayApi, FakeRelayCloud

NOW_MS = 1_764_512_345_678
NODE = "agt_01JBX0000000000000000000AA"


@pytest.fixture
def clock() -> FixedClock:
    """Time for everything (server and node); ``wall`` below is the node's wall clock for its hlc."""
    return FixedClock(NOW_MS)


@pytest.fixture
def wall() -> FixedClock:
    return FixedClock(NOW_MS)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agent.db"


@pytest.fixture
def open_store(db_path: Path, clock: FixedClock, wall: FixedClock) -> Iterator[Callable[[], RecordStore]]:
    """Open (or reopen) the store on ``db_path``; every store opened is closed at the end."""
    opened: list[RecordStore] = []

    def open_() -> RecordStore:
        store = RecordStore(db_path, clock=clock.now_ms, wall_clock=wall.now_ms)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()  # closing twice is harmless


@pytest.fixture
def store(open_store: Callable[[], RecordStore]) -> RecordStore:
    return open_store()


@pytest.fixture
def cloud(clock: FixedClock) -> FakeRelayCloud:
    return FakeRelayCloud(clock=clock.now_ms)


@pytest.fixture
def api(cloud: FakeRelayCloud) -> FakeRelayApi:
    return FakeRelayApi(cloud, NODE)
