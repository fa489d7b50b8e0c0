"""Warm heartbeat latency in-process on moto, against the bare DynamoDB calls a heartbeat needs.

Handler arm: heartbeats signed as the fleetlink agent signs them (``seq:<n>`` nonces; events built
and signed before timing) through ``functions/heartbeat/handler.py``. Baseline arm: the same three
DynamoDB requests the handler sends (captured from one heartbeat: Query of the agent partition,
the presence UpdateItem whose condition checks the sequence, Query COUNT of the agent's queue),
made directly with a boto3 client on the same moto, with the sequence advanced each time. The arms
alternate in blocks so they share the machine's noise.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (
    TABLE,
    BenchAgent,
    Stack,
    capture_dynamodb,
    header,
    local_stack,
    percentile,
    pynamodb_clients,
    ratio_text,
)

N = 400
WARMUP = 30
BLOCK = 25
GOAL = "<= 1.3"


def baseline_heartbeat(
    client: Any, requests: list[tuple[str, dict[str, Any]]], sequence: int
) -> Callable[[], None]:
    """One call = what a heartbeat needs from DynamoDB, as raw boto3 requests (next sequence each time)."""
    operations = [name for name, _ in requests]
    expected = ["Query", "UpdateItem", "Query"]
    assert operations == expected, f"the heartbeat's DynamoDB calls changed: {operations}"
    query, update, pending = (params for _, params in requests)
    values = update["ExpressionAttributeValues"]
    sequence_slots = [name for name, value in values.items() if value.get("N") == str(sequence)]
    assert sequence_slots, "the presence update does not carry the heartbeat's sequence"
    # The baseline updates a copy of the presence item, so the two arms' sequences never meet.
    presence = client.get_item(TableName=TABLE, Key=update["Key"], ConsistentRead=True)["Item"]
    update["Key"] = {**update["Key"], "pk": {"S": "AGENT#bench-baseline"}}
    client.put_item(TableName=TABLE, Item={**presence, **update["Key"]})
    state = {"next": sequence}

    def run() -> None:
        state["next"] += 1
        for name in sequence_slots:
            values[name]["N"] = str(state["next"])
        values[":0"]["N"] = str(int(time.time() * 1000))
        client.query(**query)
        client.update_item(**update)
        client.query(**pending)

    return run


def main() -> None:
    import boto3

    with local_stack() as stack:
        agent = BenchAgent(1)
        stack.register(agent, stack.mint_token())
        stack.invoke("heartbeat", agent.heartbeat_event(0))  # first heartbeat: creates the clients
        _, requests = capture_dynamodb(lambda: stack.invoke("heartbeat", agent.heartbeat_event(1)))
        client = boto3.client("dynamodb", region_name=stack.client.meta.region_name)
        baseline = baseline_heartbeat(client, requests, agent.sequence)
        handler = stack.handler("heartbeat")
        context = stack.contexts["heartbeat"]

        events = [agent.heartbeat_event(i) for i in range(N + WARMUP)]  # signed before any timing
        for event in events[:WARMUP]:
            handler(event, context)
        for _ in range(WARMUP):
            baseline()

        handler_times: list[float] = []
        baseline_times: list[float] = []
        statuses: set[int] = set()
        pending = iter(events[WARMUP:])
        gc.collect()
        for block in range(N // BLOCK):
            order = ("handler", "baseline") if block % 2 == 0 else ("baseline", "handler")
            for arm in order:
                for _ in range(BLOCK):
                    if arm == "handler":
                        event = next(pending)
                        start = time.perf_counter()
                        response = handler(event, context)
                        handler_times.append(time.perf_counter() - start)
                        statuses.add(response["statusCode"])
                    else:
                        start = time.perf_counter()
                        baseline()
                        baseline_times.append(time.perf_counter() - start)

        dynamo_share = time_inside_dynamodb(stack, agent)

    header(f"Warm heartbeat latency, in-process on moto ({N} each, blocks of {BLOCK}, alternating)")
    operations = [name for name, _ in requests]
    print(f"  handler statuses: {sorted(statuses)}; DynamoDB calls per heartbeat: {operations}")
    print("  baseline = the handler's own 3 requests (captured), replayed with boto3 (next sequence each).")
    print(f"  {'':34} {'p50':>9} {'p99':>9}")
    rows = (
        ("boto3: Query+UpdateItem+Query", baseline_times),
        ("heartbeat lambda_handler", handler_times),
    )
    for label, values in rows:
        print(f"  {label:34} {percentile(values, 50) * 1000:7.2f}ms {percentile(values, 99) * 1000:7.2f}ms")
    for q in (50, 99):
        value, base = percentile(handler_times, q), percentile(baseline_times, q)
        print(f"  p{q} {ratio_text(value, base, GOAL)}")
    inside, total = dynamo_share
    print(f"  where the handler's time goes (separate pass of 100 heartbeats, mean {total * 1000:.2f} ms):")
    print(f"  {'':4}{inside * 1000:.2f} ms inside the 3 DynamoDB calls (PynamoDB's botocore client + moto),")
    outside = (total - inside) * 1000
    print(f"  {'':4}{outside:.2f} ms outside (Powertools, validation, signature check, PynamoDB)")


def time_inside_dynamodb(stack: Stack, agent: BenchAgent, runs: int = 100) -> tuple[float, float]:
    """Mean seconds per heartbeat inside DynamoDB calls (before-parameter-build to after-call), and in all."""
    inside = [0.0]
    started: list[float] = []

    def begin(**_: Any) -> None:
        started.append(time.perf_counter())

    def end(**_: Any) -> None:
        inside[0] += time.perf_counter() - started.pop()

    clients = pynamodb_clients()
    for client in clients:
        client.meta.events.register_first("before-parameter-build.dynamodb", begin)
        client.meta.events.register_last("after-call.dynamodb", end)
    events = [agent.heartbeat_event(i) for i in range(runs)]
    handler, context = stack.handler("heartbeat"), stack.contexts["heartbeat"]
    start = time.perf_counter()
    for event in events:
        handler(event, context)
    total = time.perf_counter() - start
    for client in clients:
        client.meta.events.unregister("before-parameter-build.dynamodb", begin)
        client.meta.events.unregister("after-call.dynamodb", end)
    return inside[0] / runs, total / runs


if __name__ == "__main__":
    main()
