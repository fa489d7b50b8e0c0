"""The agent and operator clients against the real handlers (in-process, on moto, through MockTransport).

Real HTTP against the dev server is the e2e suite's job; here every request the clients build goes
through the Lambda handlers exactly as API Gateway would hand it to them.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from fleetlink.agent.hardware import fingerprint
from fleetlink.agent.sequence import HeartbeatSequence
from fleetlink.api.deps import Deps
from fleetlink.api.document import route_table
from fleetlink.auth.keys import PrivateKey, generate_private_key
from fleetlink.client.agent import FleetlinkClient
from fleetlink.client.http import FleetlinkApiError
from fleetlink.client.operator import OperatorClient
from fleetlink.core.agents.model import RegistrationEventKind
from fleetlink.core.clock import FixedClock
from fleetlink.core.entities import AgentState, Hardware, KeyAlg, Liveness
from fleetlink.local.routing import RouteTable
from fleetlink.store import keys
from fleetlink.store.agents import AgentPresenceItem
from tests.support import DOMAIN, OPERATOR_TOKEN, Api

BASE = f"https://{DOMAIN}"


@pytest.fixture
def clock() -> FixedClock:
    """The server's clock at real time: the clients sign with the current time."""
    return FixedClock(int(time.time() * 1000))


@pytest.fixture
def transport(api: Api) -> httpx.MockTransport:
    """Each request to the function that owns its route, as API Gateway routes it."""
    routes = RouteTable(route_table())

    def handle(request: httpx.Request) -> httpx.Response:
        matched = routes.match(request.method, request.url.path)
        assert matched is not None, f"no route for {request.method} {request.url.path}"
        reply = api.call(
            matched.route.function,
            request.method,
            request.url.path,
            body=request.content,
            headers=dict(request.headers),
            query=request.url.query.decode(),
        )
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body.encode())

    return httpx.MockTransport(handle)


@pytest.fixture
def operator(deps: Deps, transport: httpx.MockTransport) -> OperatorClient:
    return OperatorClient(BASE, OPERATOR_TOKEN, transport=transport, sleep=lambda _: None)


def machine(number: int) -> Hardware:
    return Hardware(
        machine_id=f"machine-{number:04d}",
        hostname=f"edge-{number}",
        ip_address=f"10.0.0.{number}",
        mac_address=f"02:00:00:00:00:{number:02x}",
        os="Linux 6.8.0",
        arch="x86_64",
        cpu_model="Xeon",
    )


def agent_client(transport: httpx.MockTransport) -> FleetlinkClient:
    return FleetlinkClient(BASE, transport=transport, sleep=lambda _: None)


@pytest.fixture
def key() -> PrivateKey:
    return generate_private_key(KeyAlg.ED25519)


def test_a_new_machine_registers_with_a_token_and_heartbeats(
    operator: OperatorClient, transport: httpx.MockTransport, key: PrivateKey
) -> None:
    # Given a registration token with default tags
    token = operator.create_token(ttl_seconds=600, max_uses=1, tags={"env": "dev"}, name_prefix="edge")
    client = agent_client(transport)
    # When a machine registers with it and heartbeats
    registered = client.register(token.token, machine(1), key, KeyAlg.ED25519, tags={"role": "db"})
    ack = client.heartbeat(registered.agent_id, status="ok", metrics={"load1": 0.25})
    # Then operators see it online, named, tagged by the token (its own ask a label), with its metrics
    agent = operator.get_agent(registered.agent_id)
    assert registered.event is RegistrationEventKind.REGISTER
    assert ack.heartbeat_interval_s == 60
    assert (agent.name, agent.tags, agent.liveness) == (
        "edge-edge-1",
        {"env": "dev"},
        Liveness.ONLINE,
    )
    assert agent.requested_tags == {"role": "db"}
    assert agent.metrics == {"load1": 0.25}
    assert agent.fingerprint == fingerprint(machine(1))


def test_the_same_key_re_registers_without_a_token_and_keeps_its_id(
    operator: OperatorClient, transport: httpx.MockTransport, key: PrivateKey
) -> None:
    # Given a registered machine whose one-use token is spent
    client = agent_client(transport)
    first = client.register(operator.create_token().token, machine(2), key, KeyAlg.ED25519)
    # When it registers again with the same key and no token
    again = client.register(None, machine(2), key, KeyAlg.ED25519)
    # Then it keeps its id, and the history shows the re-register with full similarity
    assert again.agent_id == first.agent_id
    history = operator.get_agent(first.agent_id).registration_history
    assert [(e.event, e.similarity_score) for e in history] == [
        (RegistrationEventKind.RE_REGISTER, 100),
        (RegistrationEventKind.REGISTER, None),
    ]


def test_a_revoked_agent_gets_a_403_problem(
    operator: OperatorClient, transport: httpx.MockTransport, key: PrivateKey
) -> None:
    # Given a registered agent that an operator revoked
    client = agent_client(transport)
    agent_id = client.register(operator.create_token().token, machine(3), key, KeyAlg.ED25519).agent_id
    assert operator.revoke(agent_id).state is AgentState.REVOKED
    # When it heartbeats / Then the server's problem reaches the caller
    with pytest.raises(FleetlinkApiError) as raised:
        client.heartbeat(agent_id)
    assert (raised.value.status, raised.value.code) == (403, "agent-revoked")


def test_an_unknown_token_is_refused_with_the_generic_401(
    operator: OperatorClient, transport: httpx.MockTransport, key: PrivateKey
) -> None:
    with pytest.raises(FleetlinkApiError) as raised:
        agent_client(transport).register(
            "tok_01JABCDEFGHJKMNPQRSTVWXYZ0.nope", machine(4), key, KeyAlg.ED25519
        )
    assert (raised.value.status, raised.value.code) == (401, "unauthenticated")


def test_iter_agents_reads_every_page_and_tags_can_be_replaced(
    operator: OperatorClient, transport: httpx.MockTransport
) -> None:
    # Given three registered agents
    token = operator.create_token(max_uses=3).token
    ids = {
        agent_client(transport)
        .register(token, machine(n), generate_private_key(KeyAlg.ED25519), KeyAlg.ED25519)
        .agent_id
        for n in (5, 6, 7)
    }
    # When they are listed one per page / Then all three come back
    assert {agent.agent_id for agent in operator.iter_agents(page_size=1)} == ids
    # And an operator can replace one's tags and filter by them
    chosen = sorted(ids)[0]
    operator.replace_tags(chosen, {"role": "gateway"})
    assert [a.agent_id for a in operator.iter_agents(tag="role:gateway")] == [chosen]


def test_a_bad_request_comes_back_with_field_errors(operator: OperatorClient) -> None:
    with pytest.raises(FleetlinkApiError) as raised:
        operator.create_token(name_prefix="Not A Prefix")
    assert raised.value.status == 422
    assert any(error["loc"][-1] == "name_prefix" for error in raised.value.errors)


def test_the_client_rotates_its_key_and_keeps_its_id(
    operator: OperatorClient, transport: httpx.MockTransport, key: PrivateKey
) -> None:
    # Given a registered agent
    client = agent_client(transport)
    agent_id = client.register(operator.create_token().token, machine(5), key, KeyAlg.ED25519).agent_id
    new_key = generate_private_key(KeyAlg.ED25519)
    # When it rotates to a new key
    rotated = client.rotate_key(agent_id, new_key, KeyAlg.ED25519)
    # Then same id; the client signs with the new key, which the server now holds
    assert rotated.agent_id == agent_id
    assert client.heartbeat(agent_id).server_time > 0
    old = FleetlinkClient(
        BASE, private_key=key, key_alg=KeyAlg.ED25519, transport=transport, sleep=lambda _: None
    )
    with pytest.raises(FleetlinkApiError) as raised:
        old.heartbeat(agent_id)
    assert raised.value.status == 401
    events = [e.event for e in operator.get_agent(agent_id).registration_history]
    assert events == [RegistrationEventKind.KEY_ROTATION, RegistrationEventKind.REGISTER]


# --- heartbeats signed with the agent's sequence (agent.db) -----------------------------------


def sequenced_client(
    transport: httpx.MockTransport, state_dir: Path, wall_ms: list[int], key: PrivateKey | None = None
) -> FleetlinkClient:
    """The agent's client as `fleetlink agent` builds it: heartbeats signed with the agent.db sequence."""
    return FleetlinkClient(
        BASE,
        transport=transport,
        sleep=lambda _: None,
        private_key=key,
        key_alg=KeyAlg.ED25519 if key else None,
        heartbeat_sequence=HeartbeatSequence.in_state_dir(state_dir, clock_ms=lambda: wall_ms[0]).next,
    )


def recorded_sequence(agent_id: str) -> int | None:
    item = AgentPresenceItem.get(keys.agent_pk(agent_id), keys.AGENT_PRESENCE_SK, consistent_read=True)
    return None if item.sequence is None else int(item.sequence)


def test_heartbeats_carry_the_sequence_across_a_restart_and_a_clock_step_back(
    operator: OperatorClient, transport: httpx.MockTransport, key: PrivateKey, tmp_path: Path
) -> None:
    # Given a registered agent whose heartbeat was signed with its agent.db sequence
    token = operator.create_token(ttl_seconds=600, max_uses=1)
    wall_ms = [int(time.time() * 1000)]
    client = sequenced_client(transport, tmp_path, wall_ms)
    agent_id = client.register(token.token, machine(7), key, KeyAlg.ED25519).agent_id
    client.heartbeat(agent_id)
    first = recorded_sequence(agent_id)
    # When the agent restarts (new client, new handle on the same file) with its clock an hour back
    wall_ms[0] -= 3_600_000
    restarted = sequenced_client(transport, tmp_path, wall_ms, key)
    restarted.agent_id = agent_id
    ack = restarted.heartbeat(agent_id)
    # Then its heartbeat is accepted with the next sequence
    assert first is not None
    assert ack.heartbeat_interval_s == 60
    assert recorded_sequence(agent_id) == first + 1


def test_a_sequence_behind_the_servers_falls_back_to_a_single_use_nonce(
    operator: OperatorClient, transport: httpx.MockTransport, key: PrivateKey, tmp_path: Path
) -> None:
    # Given an agent that heartbeated from one state dir
    token = operator.create_token(ttl_seconds=600, max_uses=1)
    wall_ms = [int(time.time() * 1000)]
    client = sequenced_client(transport, tmp_path / "first", wall_ms)
    agent_id = client.register(token.token, machine(8), key, KeyAlg.ED25519).agent_id
    client.heartbeat(agent_id)
    seen = recorded_sequence(agent_id)
    # When it heartbeats from a fresh agent.db while its clock is an hour behind (its sequence is stale)
    wall_ms[0] -= 3_600_000
    behind = sequenced_client(transport, tmp_path / "restored", wall_ms, key)
    ack = behind.heartbeat(agent_id)
    # Then the heartbeat still gets through (by a nonce item) and the recorded sequence is unchanged
    assert ack.heartbeat_interval_s == 60
    assert recorded_sequence(agent_id) == seen
    assert operator.get_agent(agent_id).liveness is Liveness.ONLINE
