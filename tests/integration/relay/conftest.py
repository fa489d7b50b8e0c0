"""Relay integration fixtures: an agent key, and the in-memory relay cloud served over real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetlink.auth.keys import PrivateKey, generate_private_key, private_key_to_pem
from fleetlink.client.agent import FleetlinkClient
from fleetlink.client.operator import OperatorClient
from fleetlink.client.relay import RelayClient
from fleetlink.core.clock import SystemClock
from fleetlink.core.entities import Hardware, KeyAlg
from fleetlink.local.server import DevStack
from tests.fakes.relay_api import FakeRelayCloud
from tests.fakes.relay_http import RelayHttpServer, serve

NODE = "agt_01JBX0000000000000000000AA"
OTHER_NODE = "agt_01JBX0000000000000000000BB"
OPERATOR_TOKEN = "relay-operator-token"


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


@dataclass
class DevNode:
    """An agent registered on a dev stack: its id and key, and the stack's URL and operator token."""

    url: str
    operator_token: str
    agent_id: str
    key: PrivateKey
    key_file: Path


def register_node(
    url: str, operator_token: str, tmp_path: Path, tags: dict[str, str] | None = None
) -> DevNode:
    """A new agent on the stack at ``url`` (registration token, key, hardware), its key saved to a file."""
    key = generate_private_key(KeyAlg.ED25519)
    with OperatorClient(url, operator_token) as operator:
        token = operator.create_token(ttl_seconds=600, max_uses=1, tags=tags or {}).token
    machine = f"relay-{uuid.uuid4().hex}"
    hardware = Hardware(machine_id=machine, hostname=f"{machine}.test")
    with FleetlinkClient(url) as client:
        registered = client.register(token, hardware, key, KeyAlg.ED25519)
    key_file = tmp_path / f"{registered.agent_id}.key"
    key_file.write_text(private_key_to_pem(key))
    return DevNode(url, operator_token, registered.agent_id, key, key_file)


@pytest.fixture
def dev_stack() -> Iterator[DevStack]:
    """The `fleetlink dev` stack (real handlers on moto behind a real HTTP server), in this process."""
    with DevStack(operator_token=OPERATOR_TOKEN, access_log=None, cleanup_every_s=0) as stack:
        yield stack
