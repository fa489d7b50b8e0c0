"""Fixtures for tunnel integration tests: real target servers, an asyncio loop in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fleetlink.agent.tunnels.proxy import HttpProxy, RouteTable
from tests.integration.tunnels.targets import WAIT_S, TargetServer

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = WAIT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def targets() -> Iterator[dict[str, TargetServer]]:
    """Three real HTTP servers named a, b and c."""
    servers = {name: TargetServer(name).start() for name in ("a", "b", "c")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def proxy(loop: LoopThread, targets: dict[str, TargetServer]) -> Iterator[HttpProxy]:
    """A proxy: default → a, /api → b, /api/admin → c."""
    table = RouteTable(
        targets["a"].target,
        [("/api", targets["b"].target, 0), ("/api/admin", targets["c"].target, 0)],
    )
    server = HttpProxy(table)
    loop.run(server.start())
    yield server
    loop.run(server.stop())


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path
