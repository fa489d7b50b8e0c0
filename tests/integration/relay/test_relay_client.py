"""The signed HTTP relay client and the sync worker over a real socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetlink.agent.relay.api import RelayApiError
from fleetlink.agent.relay.service import RelayService
from fleetlink.agent.relay.store import RecordStore
from fleetlink.auth.keys import PrivateKey, generate_private_key
from fleetlink.client.http import FleetlinkConnectionError
from fleetlink.client.relay import RelayClient
from fleetlink.contract.relay import QueryRequest, RecordStatus, RelayRecord
from fleetlink.core.entities import KeyAlg
from fleetlink.core.ids import IdPrefix, new_id
from tests.fakes.relay_http import RelayHttpServer
from tests.integration.relay.conftest import NODE, OTHER_NODE


def record(key: str, value: object, hlc: str = "1764512345678-0001") -> RelayRecord:
    return RelayRecord(record_id=new_id(IdPrefix.RECORD), collection="c", key=key, hlc=hlc, value=value)


def test_immediate_then_the_same_record_again_is_a_duplicate(client: RelayClient) -> None:
    sent = record("k", {"a": 1})
    assert client.immediate(sent).status is RecordStatus.APPLIED
    assert client.immediate(sent).status is RecordStatus.DUPLICATE


def test_a_batch_answers_per_record_in_request_order(client: RelayClient) -> None:
    older, newer, too_big = (
        record("k", 1, "1764512345678-0001"),
        record("k", 2, "1764512345678-0002"),
        record("j", "x" * 70_000),
    )
    results = client.batch([newer, older, too_big])
    assert [(r.record_id, r.status) for r in results] == [
        (newer.record_id, RecordStatus.APPLIED),
        (older.record_id, RecordStatus.STALE),
        (too_big.record_id, RecordStatus.REJECTED),
    ]


def test_another_node_queries_the_records_of_this_one(
    client: RelayClient, relay_server: RelayHttpServer
) -> None:
    # Given this node wrote two keys / When another agent queries the collection with a prefix
    client.batch([record("cpu/1", 10), record("mem/1", 20)])
    other_key, alg = relay_server.agents[OTHER_NODE]
    with RelayClient(relay_server.url, private_key=other_key, key_alg=alg, agent_id=OTHER_NODE) as other:
        answer = other.query(QueryRequest(collection="c", node_id=NODE, key_prefix="cpu/"))
    assert [(r.node_id, r.key, r.value) for r in answer.records] == [(NODE, "cpu/1", 10)]


def test_a_wrong_key_is_refused_with_401(relay_server: RelayHttpServer) -> None:
    forged = generate_private_key(KeyAlg.ED25519)
    client = RelayClient(relay_server.url, private_key=forged, key_alg=KeyAlg.ED25519, agent_id=NODE)
    with client, pytest.raises(RelayApiError) as caught:
        client.immediate(record("k", 1))
    assert caught.value.status == 401


def test_retry_after_reaches_the_worker(client: RelayClient, relay_server: RelayHttpServer) -> None:
    relay_server.unavailable_retry_after = 7
    with pytest.raises(RelayApiError) as caught:
        client.immediate(record("k", 1))
    assert (caught.value.status, caught.value.retry_after_s) == (503, 7.0)


def test_an_unreachable_relay_is_a_connection_error(node_key: PrivateKey) -> None:
    client = RelayClient("http://127.0.0.1:9", private_key=node_key, key_alg=KeyAlg.ED25519, agent_id=NODE)
    with client, pytest.raises(FleetlinkConnectionError):
        client.immediate(record("k", 1))


def test_the_worker_drains_a_store_to_the_relay_over_http(
    tmp_path: Path, client: RelayClient, relay_server: RelayHttpServer
) -> None:
    with RecordStore(tmp_path / "agent.db") as store:
        for i in range(1_200):
            store.set("metrics", f"k{i}", {"i": i})
        store.delete("metrics", "k0")
        worker = RelayService(store, client)
        worker.start()
        assert worker.drain(max_rounds=20)
        assert worker.requests == 3
        local = {
            (r.collection, r.key): (r.record_id, r.hlc) for r in store.list("metrics", include_deleted=True)
        }
    cloud = {(c, k): (rid, hlc) for (_, c, k), (rid, hlc, _) in relay_server.cloud.state().items()}
    assert cloud == local
