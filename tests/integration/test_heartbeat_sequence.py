"""Heartbeats signed with a sequence (``nonce="seq:<n>"``): one write, and replays refused by it."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from bench.capacity import CapacityMeter, Measurement
from http_message_signatures import MappingKeyResolver, algorithms
from requests_http_signature import HTTPSignatureAuth

from fleetlink.auth.sequence import sequence_nonce
from fleetlink.core.clock import FixedClock
from fleetlink.store import keys
from fleetlink.store.agents import AgentPresenceItem
from tests.support import DOMAIN, Api, Machine, assert_generic_401, refusal_reasons


@pytest.fixture
def agent(api: Api) -> Machine:
    machine = Machine("seq-1")
    assert api.register(machine, api.mint_token()).status == 201
    return machine


@pytest.fixture
def meter(api: Api) -> CapacityMeter:
    """Counts the DynamoDB calls (and their units) the handlers make on the test table."""
    return CapacityMeter()


def presence(agent: Machine) -> dict[str, Any]:
    assert agent.agent_id is not None
    item = AgentPresenceItem.get(keys.agent_pk(agent.agent_id), keys.AGENT_PRESENCE_SK, consistent_read=True)
    return item.serialize()


def writes(measurement: Measurement) -> list[tuple[str, str | None]]:
    return [(c.operation, c.error) for c in measurement.calls if c.operation not in ("Query", "GetItem")]


def test_a_sequenced_heartbeat_writes_only_the_presence_item(
    api: Api, agent: Machine, meter: CapacityMeter
) -> None:
    # Given a registered agent that heartbeats once (clients created, first presence written)
    assert api.heartbeat(agent, nonce=sequence_nonce(1)).status == 200
    # When it heartbeats with the next sequence
    with meter.measure("heartbeat") as measured:
        reply = api.heartbeat(agent, nonce=sequence_nonce(2))
    # Then it is accepted with one write (the presence UpdateItem, 1 WCU, no index) and no nonce item
    assert reply.status == 200, reply.body
    assert writes(measured) == [("UpdateItem", None)]
    assert (measured.wcu, measured.gsi_wcu) == (1.0, 0.0)
    assert presence(agent)["sequence"] == {"N": "2"}


def test_a_replayed_sequenced_heartbeat_is_refused_with_nothing_written(
    api: Api, agent: Machine, meter: CapacityMeter
) -> None:
    # Given a sequenced heartbeat that went through
    path = f"/v1/agents/{agent.agent_id}/heartbeat"
    raw = b'{"status":"ok","metrics":{"load1":0.5}}'
    headers = api.signed_headers(agent, "POST", path, raw, nonce=sequence_nonce(5))
    assert api.call("heartbeat", "POST", path, body=raw, headers=headers).status == 200
    before = presence(agent)
    # When the very same request is sent again
    with meter.measure("replay") as measured:
        again = api.call("heartbeat", "POST", path, body=raw, headers=headers)
    # Then 401 with its own code, and the only write attempted was refused by its condition
    assert again.status == 401
    assert again.problem_code() == "heartbeat-sequence-stale"
    assert writes(measured) == [("UpdateItem", "ConditionalCheckFailedException")]
    assert presence(agent) == before


def test_a_lower_sequence_after_a_higher_one_is_refused(api: Api, agent: Machine, clock: FixedClock) -> None:
    # Given heartbeats 10 then 12 were accepted
    assert api.heartbeat(agent, nonce=sequence_nonce(10)).status == 200
    clock.advance(1_000)
    assert api.heartbeat(agent, nonce=sequence_nonce(12)).status == 200
    before = presence(agent)
    # When heartbeat 11 arrives late (signed in time, never seen)
    clock.advance(1_000)
    late = api.heartbeat(agent, {"status": "late"}, nonce=sequence_nonce(11))
    # Then it is refused and the presence still shows heartbeat 12
    assert late.status == 401
    assert late.problem_code() == "heartbeat-sequence-stale"
    assert presence(agent) == before


def test_a_random_nonce_heartbeat_still_spends_a_nonce_item(
    api: Api, agent: Machine, meter: CapacityMeter, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an agent whose sequenced heartbeats were accepted
    assert api.heartbeat(agent, nonce=sequence_nonce(3)).status == 200
    # When a heartbeat signed with an ordinary nonce arrives / Then it is accepted by a nonce item
    with meter.measure("random nonce") as measured:
        reply = api.heartbeat(agent, nonce="an-ordinary-random-nonce")
    assert reply.status == 200, reply.body
    assert writes(measured) == [("PutItem", None), ("UpdateItem", None)]
    # and a resend of it is refused as a replayed nonce
    assert_generic_401(api.heartbeat(agent, nonce="an-ordinary-random-nonce"))
    assert refusal_reasons(caplog.records)[-1] == "signature-replayed"
    assert presence(agent)["sequence"] == {"N": "3"}


@pytest.mark.parametrize("nonce", ["seq:0", "seq:007", "seq:-1", "seq:1e3", "seq:99999999999999999999"])
def test_a_nonce_that_only_looks_like_a_sequence_is_a_single_use_nonce(
    api: Api, agent: Machine, nonce: str, caplog: pytest.LogCaptureFixture
) -> None:
    # When the nonce is not a valid sequence / Then it is spent as a nonce: accepted once, then replayed
    assert api.heartbeat(agent, nonce=nonce).status == 200
    assert_generic_401(api.heartbeat(agent, nonce=nonce))
    assert refusal_reasons(caplog.records)[-1] == "signature-replayed"
    assert "sequence" not in presence(agent)


def test_a_sequence_nonce_on_another_route_is_a_single_use_nonce(
    api: Api, agent: Machine, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a signed non-heartbeat request carrying a sequence nonce
    path = f"/v1/agents/{agent.agent_id}/executions/claim"
    first = api.signed("tasks", agent, "POST", path, {"max": 1}, nonce=sequence_nonce(40))
    assert first.status == 200, first.body
    # When it is sent again with the same nonce / Then the nonce item refuses it
    again = api.signed("tasks", agent, "POST", path, {"max": 1}, nonce=sequence_nonce(40))
    assert_generic_401(again)
    assert refusal_reasons(caplog.records)[-1] == "signature-replayed"


def test_a_third_party_rfc9421_client_with_random_nonces_still_heartbeats(
    api: Api, agent: Machine, clock: FixedClock
) -> None:
    # Given the server clock at real time (the library signs with the current time)
    clock.advance(time.time_ns() // 1_000_000 - clock.now_ms())
    assert agent.agent_id is not None
    auth = HTTPSignatureAuth(
        signature_algorithm=algorithms.ED25519,
        key_id=agent.agent_id,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={agent.agent_id: agent.key}),
        use_nonce=True,
    )
    url = f"https://{DOMAIN}/v1/agents/{agent.agent_id}/heartbeat"
    # When it heartbeats twice with requests-http-signature (random nonces)
    for _ in range(2):
        prepared = auth(requests.Request("POST", url, json={"status": "ok"}).prepare())
        assert isinstance(prepared.body, bytes)
        reply = api.call(
            "heartbeat",
            "POST",
            url.removeprefix(f"https://{DOMAIN}"),
            body=prepared.body,
            headers=dict(prepared.headers),
        )
        # Then each is accepted
        assert reply.status == 200, reply.body
    assert presence(agent)["heartbeats"] == {"N": "2"}
