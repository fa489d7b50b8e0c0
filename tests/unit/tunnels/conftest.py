"""Tunnel unit tests use a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetlink.agent.tunnels.store import TunnelStore


@pytest.fixture
def store(tmp_path: Path) -> TunnelStore:
    return TunnelStore.open(tmp_path / "agent.db")
