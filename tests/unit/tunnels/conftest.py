"""Tunnel unit tests use a real SQLite file; ``fleetlink.agent.db`` gets a stand-in until it lands."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetlink.agent.tunnels.store import TunnelStore
from tests.fakes.tunnels import install_agent_db_fallback

install_agent_db_fallback()


@pytest.fixture
def store(tmp_path: Path) -> TunnelStore:
    return TunnelStore.open(tmp_path / "agent.db")
