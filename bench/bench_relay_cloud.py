"""Relay sync, cloud side: drain throughput against a same-run baseline, request units per outcome,
and the lag from a local write to its visibility in a query.

- Drain: 10,000 records queued on a node, drained by the sync worker through the dev stack
  (`fleetlink dev`'s HTTP server, the relay handler, moto), against writing the same records with
  the same conditional PutItem straight to the same DynamoDB, with the same parallelism (goal at most 1.5x).
- Request units per applied, duplicate and stale record (100-record batches, counted from item
  sizes per AWS's rules by bench/capacity.py), including the per-request sync-state update.
- The relay-sync line of bench/cost_model.py (``--cost-only`` for it alone): one record through
  the relay handler, counted by bench/capacity.py, written to bench/results/relay_cost.json.
- Lag: a record written on the node with the sync worker running until a query of another call
  sees it (p50 / p99).

Run: ``PYTHONPATH=src:. python bench/bench_relay_cloud.py [--records N] [--lag-samples N]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench._support import header, percentile, ratio_text
from bench.capacity import CapacityMeter
from tests.integration.relay.conftest import register_node

from fleetlink.agent.relay.service import RelayService
from fleetlink.agent.relay.store import RecordStore
from fleetlink.client.relay import RelayClient
from fleetlink.contract.relay import QueryRequest
from fleetlink.core.clock import SystemClock
from fleetlink.core.entities import KeyAlg
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.relay.hlc import Hlc
from fleetlink.core.relay.merge import stored_from
from fleetlink.core.relay.records import Record, make_record
from fleetlink.core.relay.service import WRITERS, RecordService
from fleetlink.local.server import DevStack
from fleetlink.store.relay import DynamoRelayRepository

OPERATOR_TOKEN = "bench-relay-operator-token"
#: Between two queries of the lag measurement (its resolution).
POLL_S = 0.01
#: The relay-sync cost line's assumption: records a node writes an hour, each sent alone.
RECORDS_PER_HOUR = 1


def value(n: int) -> dict[str, object]:
    """A typical small record (~150 bytes of JSON)."""
    return {"n": n, "host": f"web-{n % 97:02d}", "disk_free_gb": n % 512, "status": "ok", "tags": ["a", "b"]}


def drain(stack: DevStack, tmp: Path, records: int) -> tuple[float, int]:
    """Seconds to drain ``records`` queued writes through the stack, and the requests it took."""
    node = register_node(stack.url, OPERATOR_TOKEN, tmp)
    with (
        RecordStore(tmp / "drain.db", synchronous="NORMAL") as store,
        RelayClient(
            stack.url, private_key=node.key, key_alg=KeyAlg.ED25519, agent_id=node.agent_id
        ) as client,
    ):
        for n in range(records):
            store.set("bench", f"host/{n:06d}", value(n))
        worker = RelayService(store, client)
        worker.start()
        started = time.perf_counter()
        assert worker.drain(max_rounds=records)
        return time.perf_counter() - started, worker.requests


def direct(records: int) -> float:
    """Seconds to write the same records with the same conditional PutItem, same parallelism, no HTTP."""
    repository = DynamoRelayRepository()
    now = SystemClock().now_ms()
    node = "agt_01KDXRYP00000000000000BNCH"
    items = [stored_from(node, record(f"host/{n:06d}", Hlc(now, 0), value(n)), now) for n in range(records)]
    started = time.perf_counter()
    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(repository.put_if_newer, items))
    elapsed = time.perf_counter() - started
    assert all(result.applied for result in results)
    return elapsed


def record(key: str, hlc: Hlc, data: object, collection: str = "bench") -> Record:
    return make_record(record_id=new_id(IdPrefix.RECORD), collection=collection, key=key, hlc=hlc, value=data)


def request_units(batch: int = 100) -> None:
    header(f"Request units per record ({batch}-record batches, 150-byte values, through RecordService)")
    meter = CapacityMeter()
    service = RecordService(DynamoRelayRepository(), SystemClock())
    node = "agt_01KDXRYP00000000000000RUNS"
    now = SystemClock().now_ms()
    fresh = [record(f"k{n:04d}", Hlc(now, 1), value(n), "units") for n in range(batch)]
    older = [record(f"k{n:04d}", Hlc(now, 0), value(n), "units") for n in range(batch)]
    for label, records in (("applied", fresh), ("duplicate", fresh), ("stale", older)):
        with meter.measure(label) as measured:
            answers = service.apply(node, records)
        assert {a.outcome.value for a in answers} == {label}, answers[:2]
        table, indexes, reads = (measured.wcu / batch, measured.gsi_wcu / batch, measured.rcu / batch)
        operations = ", ".join(sorted(set(measured.operations())))
        print(
            f"  {label:9s}  {table:5.2f} WCU table + {indexes:5.2f} WCU indexes + {reads:4.2f} RCU "
            f"per record   (calls: {operations})"
        )


def lag(stack: DevStack, tmp: Path, samples: int) -> None:
    header(f"Lag from a local write to visible in a query ({samples} writes, worker running)")
    node = register_node(stack.url, OPERATOR_TOKEN, tmp)
    reader = register_node(stack.url, OPERATOR_TOKEN, tmp)
    with (
        RecordStore(tmp / "lag.db") as store,
        RelayClient(
            stack.url, private_key=node.key, key_alg=KeyAlg.ED25519, agent_id=node.agent_id
        ) as client,
        RelayClient(
            stack.url, private_key=reader.key, key_alg=KeyAlg.ED25519, agent_id=reader.agent_id
        ) as peer,
    ):
        worker = RelayService(store, client)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        lags: list[float] = []
        for n in range(samples):
            key = f"lag/{n:05d}"
            started = time.perf_counter()
            store.set("lag", key, {"n": n})
            query = QueryRequest(collection="lag", node_id=node.agent_id, key_prefix=key)
            for _ in range(10_000):  # bounded: a record that never shows would end the loop
                if peer.query(query).records:
                    break
                time.sleep(POLL_S)  # leaves the stack to the sync worker between polls
            lags.append((time.perf_counter() - started) * 1000)
        stop.set()
        worker.wake()
        thread.join(timeout=10)
    print(
        f"  p50 {percentile(lags, 50):6.1f} ms   p99 {percentile(lags, 99):6.1f} ms   max {max(lags):6.1f} ms"
    )
    print(
        f"  (write with synchronous=FULL, one /relay/immediate, "
        f"queries every {POLL_S * 1000:.0f} ms; a stack of its own)"
    )


def sync_cost() -> None:
    """Request units of one record sent alone through the relay handler (signature check, nonce,
    record, sync state), written as the relay-sync line of bench/cost_model.py."""
    from bench._support import BenchAgent, local_stack
    from bench.bench_durations import relay_record
    from bench.cost_model import cost_line

    header("One record through /v1/relay/immediate (relay handler on moto, CapacityMeter)")
    with local_stack() as stack:
        meter = CapacityMeter(stack.client)
        agent = BenchAgent(1)
        stack.register(agent, stack.mint_token())
        assert agent.agent_id is not None
        sent = []
        for n in range(3):
            body = json.dumps(relay_record(n)).encode()
            event = agent.signed_event("POST", "/v1/relay/immediate", body, key_id=agent.agent_id)
            with meter.measure(f"record{n}") as measured:
                answer = json.loads(stack.invoke("relay", event)["body"])
            assert answer["status"] == "applied", answer
            sent.append(measured)
    worst = max(sent, key=lambda m: (m.wcu + m.gsi_wcu, m.rcu))
    print(
        f"  {worst.rcu:g} RCU + {worst.wcu:g} WCU + {worst.gsi_wcu:g} index WCU per record"
        f"   (calls: {', '.join(worst.operations())})"
    )
    cost_line(
        "relay",
        f"relay sync: {RECORDS_PER_HOUR} record an hour per node, each sent alone (assumed rate;"
        " a node that writes nothing sends nothing)",
        function="relay",
        requests_per_month=RECORDS_PER_HOUR * 24 * 30,
        rru=worst.rcu,
        wru=worst.wcu + worst.gsi_wcu,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--lag-samples", type=int, default=100)
    parser.add_argument("--cost-only", action="store_true", help="only the relay-sync cost line")
    args = parser.parse_args()
    if args.cost_only:
        sync_cost()
        return
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevStack(operator_token=OPERATOR_TOKEN, access_log=None, cleanup_every_s=0) as stack,
    ):
        header(f"Drain {args.records:,} queued records (batches of 500)")
        through_stack, requests = drain(stack, Path(tmp), args.records)
        straight = direct(args.records)
        print(f"  straight to DynamoDB (conditional PutItem, {WRITERS} at a time): {straight:6.2f} s")
        print(f"  through the dev stack ({requests} requests):                   {through_stack:6.2f} s")
        ratio = ratio_text(through_stack, straight, "<= 1.5x")
        print(f"  {args.records / through_stack:,.0f} records/s through the stack   {ratio}")
        request_units()
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevStack(operator_token=OPERATOR_TOKEN, access_log=None, cleanup_every_s=0) as stack,
    ):
        lag(stack, Path(tmp), args.lag_samples)
    sync_cost()


if __name__ == "__main__":
    main()
