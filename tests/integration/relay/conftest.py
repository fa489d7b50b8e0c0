"""Relay integration fixtures: an agent key, and the in-memory relay cloud served over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetlink.agent.relay.client import RelayClient
from fleetlink.auth.keys import PrivateKey, generate_private_key, private_key_to_pem
from fleetlink.core.clock import SystemClock
from fleetlink.core.entities import KeyAlg
from tests.fakes.relay_api import FakeRelayCloud
from tests.fakes.relay_http import RelayHttpServer, serve

NODE = "agt_01JBX0000000000000000000AA"
OTHER_NODE = "agt_01JBX0000000000000000000BB"


@pytest.fixture
def node_key() -> PrivateKey:
    return generate_private_key(KeyAlg.ED25519)


@pytest.fixture
def key_file(tmp_path: Path, node_key: PrivateKey) -> Path:
    path = tmp_path / "agent.key"
    path.write_text(private_key_to_pem(node_key))
    return path


@pytest.fixture
def relay_server(node_key: PrivateKey) -> Iterator[RelayHttpServer]:
    server = RelayHttpServer(FakeRelayCloud(clock=SystemClock().now_ms))
    server.agents[NODE] = (node_key, KeyAlg.ED25519)
    server.agents[OTHER_NODE] = (generate_private_key(KeyAlg.ED25519), KeyAlg.ED25519)
    with serve(server):
        yield server


@pytest.fixture
def client(relay_server: RelayHttpServer, node_key: PrivateKey) -> Iterator[RelayClient]:
    with RelayClient(
        relay_server.url, private_key=node_key, key_alg=KeyAlg.ED25519, agent_id=NODE
    ) as relay_client:
        yield relay_client
