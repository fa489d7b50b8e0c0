"""Tasks: request units per claim and result, their latency on moto, and throughput through the dev stack.

1. Request units (AWS rules from item sizes, ``CapacityMeter``) of every task operation, through
   the real handlers in-process on moto, beside a bare PutItem and GetItem of 100 B measured in
   the same run (1 WCU and 0.5 RCU by the AWS rules: the meter's self-check).
2. Warm claim and result latency in-process on moto (p50, p99) against the DynamoDB requests the
   handlers make, captured from one claim and one result and replayed directly with boto3 on the
   same moto (fresh nonce, fresh execution/task ids seeded untimed with the same items and
   versions); the arms alternate in blocks.
3. Executions completed per second through the dev stack (HTTP on 127.0.0.1) by 20 agents running
   the real ``TaskRunner`` (``true`` as a subprocess), against what the same stack serves of its
   cheapest signed request (20 threads of heartbeats) for the same wall time.

Figures only, ratios to the same-run baselines; nothing passes or fails.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    ratio_text,
)
from capacity import CallRecord, CapacityMeter, Measurement, item_size

LABEL = 62
#: Queued executions behind the head when a claim of 1 is measured on a deep queue.
DEEP_QUEUE = 15
BIG_OUTPUT = 16 * 1024
BIG_COMMAND = 4 * 1024
NO_GOAL = "none given"
HEARTBEAT_GOAL = "at most 2 write units and no GSI write (bench_capacity's heartbeat goal)"

# latency
N = 80
WARMUP = 5
BLOCK = 20
#: The timed blocks of the latency section stop before a pair of blocks would end past this (seconds).
LATENCY_BUDGET_S = 20.0
#: Queued executions kept ahead of the claims: a claim of 1 reads max + 10 = 11 queue entries.
QUEUE_FLOOR = 11

# throughput
AGENTS = 20
ROUNDS = 2
TASKS_PER_ROUND = 3  # x 20 agents x 2 rounds = 120 executions
ROUND_LIMIT_S = 15.0


# --- signed task requests ----------------------------------------------------------------------


def claim_event(agent: BenchAgent, max_: int, running: list[str] | None = None) -> dict[str, Any]:
    assert agent.agent_id is not None
    body = json.dumps({"max": max_, "running_executions": running or []}).encode()
    path = f"/v1/agents/{agent.agent_id}/executions/claim"
    return agent.signed_event("POST", path, body, key_id=agent.agent_id)


def result_body(lease: dict[str, Any], status: str = "succeeded", output: str = "", **fields: Any) -> bytes:
    now = int(time.time() * 1000)
    body = {
        "attempt": lease["attempt"],
        "status": status,
        "exit_code": 0 if status == "succeeded" else 1,
        "output": output,
        "started_at": now - 5,
        "finished_at": now,
        **fields,
    }
    return json.dumps(body).encode()


def result_event(agent: BenchAgent, execution_id: str, body: bytes) -> dict[str, Any]:
    assert agent.agent_id is not None
    return agent.signed_event("POST", f"/v1/executions/{execution_id}/result", body, key_id=agent.agent_id)


def heartbeat_event(agent: BenchAgent, running: list[str]) -> dict[str, Any]:
    assert agent.agent_id is not None
    body = json.dumps({"status": "ok", "metrics": {"cpu": 0.25}, "running_executions": running}).encode()
    return agent.signed_event("POST", f"/v1/agents/{agent.agent_id}/heartbeat", body, key_id=agent.agent_id)


def nonce_key(event: dict[str, Any], agent_id: str) -> str:
    """The nonce item's partition key a signed event creates."""
    match = re.search(r'nonce="([^"]+)"', event["headers"]["signature-input"])
    assert match is not None
    return f"NONCE#{agent_id}#{match[1]}"


@dataclass
class Tasks:
    """Task calls through the in-process handlers."""

    stack: Stack

    def create(self, agents: list[BenchAgent], command: str = "true", **fields: Any) -> str:
        body = {"type": "shell", "command": command, "targets": {"agent_ids": [a.agent_id for a in agents]}}
        task_id: str = self.stack.operator("tasks", "POST", "/v1/tasks", body | fields)["task_id"]
        return task_id

    def claim(
        self, agent: BenchAgent, max_: int = 1, running: list[str] | None = None
    ) -> list[dict[str, Any]]:
        answer = json.loads(self.stack.invoke("tasks", claim_event(agent, max_, running))["body"])
        leases: list[dict[str, Any]] = answer["executions"]
        return leases

    def report(self, agent: BenchAgent, lease: dict[str, Any], body: bytes | None = None) -> str:
        event = result_event(agent, lease["execution_id"], body or result_body(lease))
        status: str = json.loads(self.stack.invoke("tasks", event)["body"])["status"]
        return status

    def heartbeat(self, agent: BenchAgent, running: list[str]) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(
            self.stack.invoke("heartbeat", heartbeat_event(agent, running))["body"]
        )
        return answer


# --- 1. request units --------------------------------------------------------------------------


class ShiftedClock:
    """The system clock plus an offset the benchmark moves (to let a lease run out)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


def probe_item(size: int, name: str) -> dict[str, Any]:
    """An item of exactly ``size`` bytes by the AWS formula."""
    item: dict[str, Any] = {"pk": {"S": f"{name}#{size}"}, "sk": {"S": "#"}, "payload": {"S": ""}}
    item["payload"]["S"] = "x" * (size - item_size(item))
    return item


@dataclass
class Units:
    """Measured rows, in order, and the baselines."""

    meter: CapacityMeter
    rows: list[tuple[str, Measurement]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @contextmanager
    def measure(self, label: str) -> Iterator[Measurement]:
        with self.meter.measure(label) as measurement:
            yield measurement
        self.rows.append((label, measurement))


def gsi_split(call: CallRecord) -> dict[str, float]:
    """Index write units of one call, per index (from the meter's notes)."""
    split: dict[str, float] = {}
    for note in call.notes:
        match = re.match(r"(\w+): ([\d.]+) WCU", note)
        if match:
            split[match[1]] = split.get(match[1], 0.0) + float(match[2])
    return split


def call_text(call: CallRecord) -> str:
    parts = [f"{call.rcu + call.gsi_rcu:g} RCU"] if call.rcu or call.gsi_rcu else []
    parts += [f"{call.wcu:g} WCU"] if call.wcu else []
    if call.gsi_wcu:
        split = ", ".join(f"{name} {units:g}" for name, units in sorted(gsi_split(call).items()))
        parts.append(f"{call.gsi_wcu:g} GSI WCU ({split})")
    failed = f" ({call.error})" if call.error else ""
    return f"{call.operation}{failed} " + " + ".join(parts or ["0"])


def request_units(
    stack: Stack, clock: ShiftedClock
) -> tuple[Units, Measurement, Measurement, dict[str, str]]:
    meter = CapacityMeter(stack.client)
    units = Units(meter)
    put_item = probe_item(100, "BASELINE")
    with meter.measure("put") as put:
        stack.client.put_item(TableName=TABLE, Item=put_item)
    with meter.measure("get") as get:
        stack.client.get_item(TableName=TABLE, Key={"pk": put_item["pk"], "sk": put_item["sk"]})

    tasks = Tasks(stack)
    token = stack.mint_token(max_uses=20)
    main, idle, renewing, expiring, bulky = (BenchAgent(i) for i in range(1, 6))
    fleet = [BenchAgent(10 + i) for i in range(10)]
    for agent in [main, idle, renewing, expiring, bulky, *fleet]:
        stack.register(agent, token)
        stack.invoke("heartbeat", agent.heartbeat_event(0))

    # creation, then claim of 1 and the result that finishes the task
    with units.measure("task creation, fan-out to 1 agent"):
        tasks.create([main])
    with units.measure("task creation, fan-out to 10 agents"):
        fan_task = tasks.create(fleet)
    with units.measure("claim of 1 (1 queued)"):
        (lease,) = tasks.claim(main, 1)
    item = stack.client.get_item(
        TableName=TABLE, Key={"pk": {"S": f"EXE#{lease['execution_id']}"}, "sk": {"S": "#"}}
    )["Item"]
    sizes = {"execution": f"{item_size(item)} B (leased, command 'true')"}
    body = result_body(lease)
    with units.measure("result: succeeded, final attempt, last of its task"):
        status = tasks.report(main, lease, body)
    assert status == "succeeded", status
    with units.measure("result resent (same result: idempotent, recorded once)"):
        tasks.report(main, lease, body)

    # a deep queue: claim of 1 and of 5; then the agent's queue runs dry
    for _ in range(DEEP_QUEUE):
        tasks.create([main])
    with units.measure(f"claim of 1 ({DEEP_QUEUE} queued)"):
        leases = tasks.claim(main, 1)
    with units.measure(f"claim of 5 ({DEEP_QUEUE - 1} queued)"):
        leases += tasks.claim(main, 5)
    assert len(leases) == 6, leases
    while batch := tasks.claim(main, 10):
        leases += batch
    with units.measure("claim with nothing queued"):
        assert tasks.claim(main, 1) == []
    for held in leases:
        tasks.report(main, held)

    # results of a 10-agent task: its open count is sharded min(8, executions) ways by execution id
    from fleetlink.store import keys

    fan = {agent.agent_id: tasks.claim(agent, 1)[0] for agent in fleet}
    shard_of = {a: keys.task_shard(lease["execution_id"], len(fleet)) for a, lease in fan.items()}
    per_shard = Counter(shard_of.values())
    shared = next(a for a in fleet if per_shard[shard_of[a.agent_id]] > 1)
    alone = next((a for a in fleet if per_shard[shard_of[a.agent_id]] == 1), None)
    with units.measure("result: succeeded, task still open (its count shard > 0)"):
        tasks.report(shared, fan.pop(str(shared.agent_id)))
    if alone is not None:
        with units.measure("result: succeeded, its count shard reaches 0, task open"):
            tasks.report(alone, fan.pop(str(alone.agent_id)))
    else:
        units.notes.append("no execution of the 10-agent task was alone in its count shard this run")
    for agent in fleet:
        if agent.agent_id in fan:
            tasks.report(agent, fan.pop(str(agent.agent_id)))
    detail = stack.operator("tasks", "GET", f"/v1/tasks/{fan_task}")
    assert detail["state"] == "finished", detail["state"]

    # a failed attempt with a retry left, then the retry succeeds
    tasks.create([main], max_retries=1)
    (lease,) = tasks.claim(main, 1)
    with units.measure("result: failed, retry left (requeued)"):
        status = tasks.report(main, lease, result_body(lease, "failed"))
    assert status == "queued", status
    (lease,) = tasks.claim(main, 1)
    tasks.report(main, lease)

    # big output: kept inline up to 16 KiB
    tasks.create([main])
    (lease,) = tasks.claim(main, 1)
    with units.measure(f"result: succeeded, {BIG_OUTPUT // 1024} KiB output, last of its task"):
        tasks.report(main, lease, result_body(lease, output="x" * BIG_OUTPUT))

    # heartbeats: idle, and renewing one running execution
    with units.measure("heartbeat, idle (nothing queued or running)"):
        tasks.heartbeat(idle, [])
    tasks.create([renewing])
    (lease,) = tasks.claim(renewing, 1)
    with units.measure("heartbeat renewing 1 execution (leased -> running)"):
        answer = tasks.heartbeat(renewing, [lease["execution_id"]])
    with units.measure("heartbeat renewing 1 execution (running, steady)"):
        answer = tasks.heartbeat(renewing, [lease["execution_id"]])
    assert answer["renewed"] == [lease["execution_id"]], answer
    tasks.report(renewing, lease)

    # the same with bigger commands (executions carry their command; the queue and gsi3 project ALL)
    big = "true " + "#" * (BIG_COMMAND - 5)
    tasks.create([renewing], command=big)
    (lease,) = tasks.claim(renewing, 1)
    tasks.heartbeat(renewing, [lease["execution_id"]])
    with units.measure(f"heartbeat renewing 1 execution, {BIG_COMMAND // 1024} KiB command (steady)"):
        tasks.heartbeat(renewing, [lease["execution_id"]])
    tasks.report(renewing, lease)
    for _ in range(DEEP_QUEUE):
        tasks.create([bulky], command=big)
    with units.measure(f"claim of 1 ({DEEP_QUEUE} queued, {BIG_COMMAND // 1024} KiB commands)"):
        leases = tasks.claim(bulky, 1)
    while batch := tasks.claim(bulky, 10):
        leases += batch
    for held in leases:
        tasks.report(bulky, held)

    # the lease-expiry duty: nothing due, then one lease run out (max_retries 0: timed_out, task done)
    from fleetlink.local.events import LocalLambdaContext, scheduled_event

    cleanup = stack.handler("cleanup")
    context = LocalLambdaContext(function_name="fleetlink-cleanup")
    with units.measure("lease-expiry duty, nothing due"):
        handled = cleanup(scheduled_event("lease-expiry"), context)["handled"]
    assert handled == {"lease-expiry": 0}, handled
    tasks.create([expiring])
    (lease,) = tasks.claim(expiring, 1)
    clock.offset_ms = lease["lease_expires_at"] - clock.now_ms() + 1000
    try:
        with units.measure("lease-expiry duty, 1 lease run out (timed_out, last of task)"):
            handled = cleanup(scheduled_event("lease-expiry"), context)["handled"]
    finally:
        clock.offset_ms = 0
    assert handled == {"lease-expiry": 1}, handled
    return units, put, get, sizes


def print_units(units: Units, put: Measurement, get: Measurement, sizes: dict[str, str]) -> None:
    header("1. Request units per task operation (AWS rules from item sizes, CapacityMeter, real handlers)")
    columns = ("RCU", "WCU", "GSI WCU", "calls", "RCU/get", "WCU/put")
    widths = (5, 5, 7, 5, 8, 8)
    print(f"  {'':{LABEL}}" + "".join(f" {c:>{w}}" for c, w in zip(columns, widths, strict=True)))

    def line(label: str, m: Measurement) -> str:
        return (
            f"  {label:{LABEL}} {m.rcu:5.1f} {m.wcu:5.1f} {m.gsi_wcu:7.1f} {len(m.calls):5d}"
            f" {m.rcu / get.rcu:7.1f}x {m.wcu / put.wcu:7.1f}x"
        )

    print(line("bare GetItem, 100 B (baseline)", get))
    print(line("bare PutItem, 100 B (baseline)", put))
    ok = put.wcu == 1.0 and get.rcu == 0.5
    print(
        f"  meter self-check: PutItem {put.wcu:g} WCU (AWS: 1), GetItem {get.rcu:g} RCU (AWS: 0.5) -> "
        + ("ok" if ok else "MISMATCH")
    )
    for label, m in units.rows:
        print(line(label, m))
    print(f"  goals: {NO_GOAL} for task operations; for heartbeats, {HEARTBEAT_GOAL}:")
    for label, m in units.rows:
        if label.startswith("heartbeat"):
            print(
                f"    {label}: {m.wcu:g} WCU ({m.wcu / put.wcu:g}x the bare PutItem), {m.gsi_wcu:g} GSI WCU"
            )
    for text in units.notes:
        print(f"  NOTE: {text}")
    print("  item sizes: " + "; ".join(f"{name} {size}" for name, size in sizes.items()))
    header("Per call (signed requests begin with Query: authenticate, PutItem: spend the nonce)")
    for label, m in units.rows:
        print(f"  {label}:\n      " + " | ".join(call_text(call) for call in m.calls))
    header("GSI write units per execution transition (the execution's write, per index)")
    print(
        "  gsi2 = agent queue (ALL), gsi3 = task's executions (INCLUDE: status, result),"
        " gsi4 = timers (INCLUDE)"
    )
    transitions = {
        "queued -> leased (claim)": "claim of 1 (1 queued)",
        "leased -> running (heartbeat renewal)": "heartbeat renewing 1 execution (leased -> running)",
        "running -> running (lease renewed)": "heartbeat renewing 1 execution (running, steady)",
        "leased -> succeeded (result)": "result: succeeded, final attempt, last of its task",
        "leased -> queued (result: failed, retry)": "result: failed, retry left (requeued)",
        "leased -> timed_out (lease expired)": "lease-expiry duty, 1 lease run out (timed_out, last of task)",
    }
    measured = dict(units.rows)
    for transition, label in transitions.items():
        calls = measured[label].calls
        # a renewal is an UpdateItem of the execution (the heartbeat's last one), others a PutItem
        puts = [c for c in calls if c.operation == "PutItem" and gsi_split(c)]
        puts = puts or [c for c in calls if c.operation == "UpdateItem"][-1:]
        split = gsi_split(puts[-1]) if puts else {}
        text = ", ".join(f"{name} {value:g}" for name, value in sorted(split.items())) or "none"
        total = sum(split.values())
        table = puts[-1].wcu if puts else 0
        print(f"  {transition:44} table {table:g} WCU, GSI {total:g} WCU ({text})")


# --- 2. latency ------------------------------------------------------------------------------------


@dataclass
class Replay:
    """The DynamoDB requests of one handler call, replayable on fresh ids with raw boto3."""

    calls: list[tuple[str, dict[str, Any]]]
    #: Items that must exist before the requests run (the handler's before-images), keyed by pk.
    before: list[dict[str, Any]]
    ids: tuple[str, ...]

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    def prepare(
        self, client: Any, spent: list[dict[str, Any]]
    ) -> list[tuple[Callable[..., Any], dict[str, Any]]]:
        """Seed fresh copies of the before-images (untimed); the requests to time, on those copies."""
        from fleetlink.core.ids import IdPrefix, new_id

        fresh = {old: new_id(IdPrefix(old.split("_")[0])) for old in self.ids}

        def renamed(value: Any) -> Any:
            text = json.dumps(value)
            for old, new in fresh.items():
                text = text.replace(old, new)
            return json.loads(text)

        for item in self.before:
            seeded = {k: v for k, v in renamed(item).items() if k not in ("gsi2pk", "gsi2sk")}
            client.put_item(TableName=TABLE, Item=seeded)
            spent.append({"pk": seeded["pk"], "sk": seeded["sk"]})
        now_s = int(time.time())
        requests = []
        for operation, params in self.calls:
            params = renamed(params)
            item = params.get("Item", {})
            if item.get("type", {}).get("S") == "nonce":
                agent_id = item["pk"]["S"].split("#")[1]
                item["pk"]["S"] = f"NONCE#{agent_id}#{secrets.token_urlsafe(16)}"
                lifetime = int(item["ttl"]["N"]) - int(params["ExpressionAttributeValues"][":0"]["N"])
                item["ttl"]["N"] = str(now_s + lifetime)
                params["ExpressionAttributeValues"][":0"]["N"] = str(now_s)
                spent.append({"pk": item["pk"], "sk": item["sk"]})
            elif "Item" in params:
                spent.append({"pk": item["pk"], "sk": item["sk"]})
            method = getattr(client, re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())
            requests.append((method, params))
        return requests


def get_raw(client: Any, pk: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = client.get_item(
        TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": "#"}}
    ).get("Item")
    return item


def capture_claim(stack: Stack, tasks: Tasks, agent: BenchAgent) -> tuple[Replay, dict[str, Any]]:
    """One claim of 1, with the queue head it leases (its before-image) read first."""
    assert agent.agent_id is not None
    head = stack.client.query(
        TableName=TABLE,
        IndexName="gsi2",
        KeyConditionExpression="gsi2pk = :q",
        ExpressionAttributeValues={":q": {"S": f"QUEUE#{agent.agent_id}"}},
        Limit=1,
    )["Items"][0]
    leases, calls = capture_dynamodb(lambda: tasks.claim(agent, 1))
    (lease,) = leases
    assert head["execution_id"]["S"] == lease["execution_id"], "the claim did not lease the queue head"
    return Replay(calls, [head], (lease["execution_id"], lease["task_id"])), lease


def capture_result(stack: Stack, tasks: Tasks, agent: BenchAgent, lease: dict[str, Any]) -> Replay:
    """One result (succeeded, last of a 1-agent task), with the items it reads and writes read first."""
    from fleetlink.store.keys import TASK_SHARDS

    execution_id, task_id = lease["execution_id"], lease["task_id"]
    pks = [f"EXE#{execution_id}", f"TASK#{task_id}"] + [f"TASKOPEN#{task_id}#{s}" for s in range(TASK_SHARDS)]
    before = [item for pk in pks if (item := get_raw(stack.client, pk)) is not None]
    _, calls = capture_dynamodb(lambda: tasks.report(agent, lease))
    return Replay(calls, before, (execution_id, task_id))


@dataclass
class Timings:
    claim: list[float] = field(default_factory=list)
    result: list[float] = field(default_factory=list)

    @property
    def both(self) -> list[float]:
        return [c + r for c, r in zip(self.claim, self.result, strict=True)]


def latency(stack: Stack) -> tuple[Timings, Timings, Replay, Replay]:
    import boto3

    from fleetlink.store.keys import TASK_SHARDS

    tasks = Tasks(stack)
    agent = BenchAgent(1)
    stack.register(agent, stack.mint_token())
    assert agent.agent_id is not None
    stack.invoke("heartbeat", agent.heartbeat_event(0))
    for _ in range(1 + QUEUE_FLOOR):
        tasks.create([agent])
    claim_replay, lease = capture_claim(stack, tasks, agent)
    result_replay = capture_result(stack, tasks, agent, lease)
    client = boto3.client("dynamodb", region_name=stack.client.meta.region_name)
    handler, context = stack.handler("tasks"), stack.contexts["tasks"]
    spent: list[dict[str, Any]] = []

    def clean() -> None:
        for key in spent:
            stack.client.delete_item(TableName=TABLE, Key=key)
        spent.clear()

    def finished(leased: dict[str, Any]) -> None:
        """The handler's finished items are deleted between blocks (as TTL would, later)."""
        task_id = leased["task_id"]
        pks = [f"EXE#{leased['execution_id']}", f"TASK#{task_id}"]
        pks += [f"TASKOPEN#{task_id}#{shard}" for shard in range(TASK_SHARDS)]
        spent.extend({"pk": {"S": pk}, "sk": {"S": "#"}} for pk in pks)

    def handler_run(times: Timings | None, count: int) -> None:
        for _ in range(count):  # the queue stays QUEUE_FLOOR deep or more
            tasks.create([agent])
        events = [claim_event(agent, 1) for _ in range(count)]
        for event in events:
            spent.append({"pk": {"S": nonce_key(event, str(agent.agent_id))}, "sk": {"S": "#"}})
        gc.collect()
        for event in events:
            start = time.perf_counter()
            response = handler(event, context)
            claimed = time.perf_counter()
            (leased,) = json.loads(response["body"])["executions"]
            report = result_event(agent, leased["execution_id"], result_body(leased))
            spent.append({"pk": {"S": nonce_key(report, str(agent.agent_id))}, "sk": {"S": "#"}})
            start_result = time.perf_counter()
            answer = handler(report, context)
            done = time.perf_counter()
            assert answer["statusCode"] == 200, answer
            finished(leased)
            if times is not None:
                times.claim.append(claimed - start)
                times.result.append(done - start_result)

    def baseline_run(times: Timings | None, count: int) -> None:
        rounds = [
            (claim_replay.prepare(client, spent), result_replay.prepare(client, spent)) for _ in range(count)
        ]
        gc.collect()
        for claim_requests, result_requests in rounds:
            start = time.perf_counter()
            for method, params in claim_requests:
                method(**params)
            claimed = time.perf_counter()
            start_result = time.perf_counter()
            for method, params in result_requests:
                method(**params)
            done = time.perf_counter()
            if times is not None:
                times.claim.append(claimed - start)
                times.result.append(done - start_result)

    handler_run(None, WARMUP)
    baseline_run(None, WARMUP)
    clean()
    handler_times, baseline_times = Timings(), Timings()
    started = pair_started = time.perf_counter()
    for block in range(N // BLOCK):
        arms = [lambda: handler_run(handler_times, BLOCK), lambda: baseline_run(baseline_times, BLOCK)]
        for arm in arms if block % 2 == 0 else reversed(arms):
            arm()
            clean()
        if block % 2 == 1:  # a pair of blocks done: would another pair overrun the budget?
            now = time.perf_counter()
            if now + (now - pair_started) > started + LATENCY_BUDGET_S:
                break
            pair_started = now
    return handler_times, baseline_times, claim_replay, result_replay


def print_latency(handler: Timings, baseline: Timings, claim: Replay, result: Replay) -> None:
    count = len(handler.claim)
    header(
        f"2. Warm claim and result latency, in-process on moto ({count} each, blocks of {BLOCK}, alternating)"
    )
    if count < N:
        print(
            f"  (stopped after {count} of {N}: one more pair of blocks would overrun {LATENCY_BUDGET_S:g} s)"
        )
    print(f"  claim of 1 makes:   {' + '.join(claim.operations())}")
    print(f"  result makes:       {' + '.join(result.operations())}")
    print("  (the result measured is the last of a 1-agent task: it also finishes the task)")
    print("  baseline = those requests, captured from the handlers and replayed with boto3 on the same moto")
    print("  (fresh nonce; fresh execution/task ids seeded untimed with the same items and versions);")
    print(
        f"  the queue holds >= {QUEUE_FLOOR} executions throughout: both arms' queue Query reads 11 entries;"
    )
    print("  nonces, seeded copies and the handler's finished items are deleted between blocks (untimed).")
    print(f"  {'':42} {'p50':>9} {'p99':>9}")
    rows = (
        ("boto3: the claim's requests", baseline.claim),
        ("tasks lambda_handler: claim of 1", handler.claim),
        ("boto3: the result's requests", baseline.result),
        ("tasks lambda_handler: result", handler.result),
        ("boto3: claim + result requests", baseline.both),
        ("tasks lambda_handler: claim + result", handler.both),
    )
    for label, values in rows:
        print(f"  {label:42} {percentile(values, 50) * 1000:7.2f}ms {percentile(values, 99) * 1000:7.2f}ms")
    for name, mine, base in (
        ("claim", handler.claim, baseline.claim),
        ("result", handler.result, baseline.result),
        ("claim + result", handler.both, baseline.both),
    ):
        extra = (percentile(mine, 50) - percentile(base, 50)) * 1000
        print(f"  {name:15} the handler's own time beyond its requests (p50 difference): {extra:6.2f} ms")
    for name, mine, base in (
        ("claim", handler.claim, baseline.claim),
        ("result", handler.result, baseline.result),
        ("claim + result", handler.both, baseline.both),
    ):
        for q in (50, 99):
            print(f"  {name:15} p{q} {ratio_text(percentile(mine, q), percentile(base, q), NO_GOAL)}")


# --- 3. throughput ---------------------------------------------------------------------------------


def throughput() -> None:
    from fleetlink.agent.tasks.runner import TaskRunner
    from fleetlink.agent.tasks.service import RunnerEvent
    from fleetlink.agent.tasks.store import AgentStore
    from fleetlink.api.settings import Settings
    from fleetlink.client.agent import FleetlinkClient
    from fleetlink.client.operator import OperatorClient
    from fleetlink.core.entities import Hardware, KeyAlg
    from fleetlink.local.server import DevStack

    class CountingClient(FleetlinkClient):
        """The agent's client, counting the calls its runner makes."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.calls: Counter[str] = Counter()

        def heartbeat(self, *args: Any, **kwargs: Any) -> Any:
            self.calls["heartbeat"] += 1
            ack = super().heartbeat(*args, **kwargs)
            self.calls["renewed by heartbeat"] += len(ack.renewed)
            return ack

        def claim(self, *args: Any, **kwargs: Any) -> Any:
            self.calls["claim"] += 1
            claimed = super().claim(*args, **kwargs)
            self.calls["renewed by claim"] += len(claimed.renewed)
            return claimed

        def report_result(self, *args: Any, **kwargs: Any) -> Any:
            self.calls["result"] += 1
            return super().report_result(*args, **kwargs)

    retried = RunnerWarnings()
    runner_log = logging.getLogger("fleetlink.agent.tasks.service")
    runner_log.addHandler(retried)
    runner_log.propagate = False  # counted and summarised below instead of printed as they happen
    lock = threading.Lock()
    reported: Counter[str] = Counter()
    all_reported = threading.Event()
    expected = [0]

    def listen(event: RunnerEvent) -> None:
        if event.kind != "reported":
            return
        with lock:
            reported[event.detail] += 1
            if sum(reported.values()) >= expected[0]:
                all_reported.set()

    header(f"3. Throughput through the dev stack ({AGENTS} agents, HTTP on 127.0.0.1)")
    with (
        tempfile.TemporaryDirectory() as scratch,
        DevStack(port=0, cleanup_every_s=0, access_log=None) as stack,
    ):
        operator = OperatorClient(stack.url, stack.operator_token)
        nonce_ttl_s = Settings.from_env().nonce_lifetime_s
        token = operator.create_token(max_uses=AGENTS).token
        agents = [BenchAgent(100 + i) for i in range(AGENTS)]
        clients: list[CountingClient] = []
        for agent in agents:
            hardware = json.loads(agent.registration_body())["hardware"]
            client = CountingClient(stack.url)
            client.register(
                token, Hardware(**hardware), agent.key, KeyAlg.ED25519, fingerprint=agent.fingerprint
            )
            agent.agent_id = client.agent_id
            clients.append(client)
        runners = [
            TaskRunner(
                client,
                AgentStore(Path(scratch) / f"agent-{i}.db"),
                registry=None,
                agent_id=str(client.agent_id),
                listener=listen,
            )
            for i, client in enumerate(clients)
        ]
        threads = [
            threading.Thread(target=r.run, name=f"runner-{i}", daemon=True) for i, r in enumerate(runners)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # the runners' first heartbeat: nothing pending, they wait for the next one

        executions, exec_s, beats, beat_s = 0, 0.0, 0, 0.0
        sent: Counter[str] = Counter()
        task_ids: list[str] = []
        for round_ in range(1, ROUNDS + 1):
            for client in clients:
                client.calls.clear()
            with lock:
                expected[0] = sum(reported.values()) + TASKS_PER_ROUND * AGENTS
                all_reported.clear()
            # DynamoDB's TTL would delete spent nonces (10 min); moto keeps them, and its index
            # Queries slow down with every item in the table, so they go between arms (untimed).
            stack.expire_ttl_items(now_s=int(time.time()) + nonce_ttl_s + 1)
            for _ in range(TASKS_PER_ROUND):
                created = operator.create_task(command="true", agent_ids=[str(a.agent_id) for a in agents])
                task_ids.append(created.task_id)
            start = time.perf_counter()
            for runner in runners:
                runner.wake()
            finished = all_reported.wait(ROUND_LIMIT_S)
            elapsed = time.perf_counter() - start
            with lock:
                done = TASKS_PER_ROUND * AGENTS - (expected[0] - sum(reported.values()))
            for client in clients:
                sent += client.calls
            if not finished:
                print(
                    f"  round {round_}: only {done} of {TASKS_PER_ROUND * AGENTS} reported in {elapsed:.1f} s"
                )
            stack.expire_ttl_items(now_s=int(time.time()) + nonce_ttl_s + 1)
            count, window, errors = heartbeat_flood(stack.url, agents, elapsed)
            for error, times in errors.items():
                print(f"  heartbeat arm: {times} x {error}")
            print(
                f"  round {round_}: {done} executions reported in {elapsed:.2f} s ({done / elapsed:.1f}/s);"
                f" then {count} heartbeats in {window:.2f} s ({count / window:.1f}/s);"
                f" ratio {(count / window) / (done / elapsed):.2f}"
            )
            executions, exec_s, beats, beat_s = (
                executions + done,
                exec_s + elapsed,
                beats + count,
                beat_s + window,
            )
        for runner in runners:
            runner.request_stop()
        for thread in threads:
            thread.join(10)
        states = Counter(operator.get_task(task_id).state for task_id in task_ids)
        outcomes: Counter[str] = Counter()
        for task_id in task_ids:
            outcomes.update(operator.get_task(task_id).counts)
        for client in clients:
            client.close()
        operator.close()
    runner_log.removeHandler(retried)
    runner_log.propagate = True

    exec_rate, beat_rate = executions / exec_s, beats / beat_s
    print(f"  executions/s (claim, run `true`, report; the real TaskRunner): {exec_rate:7.1f}")
    print(f"  heartbeats/s (baseline: {AGENTS} threads, signed heartbeats):  {beat_rate:7.1f}")
    print(
        f"  heartbeats/s / executions/s = {beat_rate / exec_rate:.2f} heartbeat-equivalents per execution"
        f"  (goal {NO_GOAL})"
    )
    per = {name: sent[name] / executions for name in ("heartbeat", "claim", "result")}
    print(
        "  requests the runners sent per execution: "
        + ", ".join(f"{name} {value:.2f}" for name, value in per.items())
        + f" (total {sum(per.values()):.2f})"
    )
    renewals = sent["renewed by heartbeat"] + sent["renewed by claim"]
    print(
        f"  leases renewed per execution: {renewals / executions:.2f}"
        f" (by heartbeats {sent['renewed by heartbeat']}, by claims {sent['renewed by claim']});"
        " each renewal updates the lease fields only (see section 1)"
    )
    print(
        f"  server's record: tasks {dict(states)}, executions {dict(outcomes)};"
        f" runners reported {dict(reported)}"
    )
    for message, times in retried.messages.items():
        print(f"  runner warnings: {times} x {message}")
    if retried.messages:
        print("  (a runner whose call failed waits 2 s or more before its next step: that round ran slower)")
    print("  NOTE: the dev stack runs one handler invocation at a time (one Lambda container, INVOKE_LOCK),")
    print("  and the agents, their subprocesses and the server share this process and machine: a local")
    print("  figure for comparing changes, not what AWS (many concurrent containers) would sustain.")


class RunnerWarnings(logging.Handler):
    """Counts the runners' warnings (failed calls they retry), by message with digits and ids masked."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = re.sub(r"(exe|agt)_\w+|:\d+|\d+(\.\d+)? s\b", "*", record.getMessage())
        self.messages[message[:140]] += 1


def heartbeat_flood(url: str, agents: list[BenchAgent], seconds: float) -> tuple[int, float, Counter[str]]:
    """Signed heartbeats from one thread per agent for ``seconds``: (answered, wall time, errors by kind)."""
    from fleetlink.client.agent import FleetlinkClient
    from fleetlink.client.http import FleetlinkClientError
    from fleetlink.core.entities import KeyAlg

    counts = [0] * len(agents)
    errors: Counter[str] = Counter()
    ready, go = threading.Barrier(len(agents) + 1), threading.Event()
    deadline = [0.0]

    def beat(index: int, agent: BenchAgent) -> None:
        agent_id = str(agent.agent_id)
        with FleetlinkClient(url, private_key=agent.key, key_alg=KeyAlg.ED25519, agent_id=agent_id) as client:
            client.heartbeat(agent_id, status="ok")  # opens the connection, untimed
            ready.wait(60)
            go.wait()
            while time.perf_counter() < deadline[0]:
                try:
                    client.heartbeat(agent_id, status="ok", metrics={"cpu": 0.25, "mem": 0.5})
                except FleetlinkClientError as error:
                    errors[f"{type(error).__name__}: {error}"[:120]] += 1
                    continue
                counts[index] += 1

    threads = [threading.Thread(target=beat, args=(i, a), daemon=True) for i, a in enumerate(agents)]
    for thread in threads:
        thread.start()
    ready.wait(60)
    start = time.perf_counter()
    deadline[0] = start + seconds
    go.set()
    for thread in threads:
        thread.join(seconds + 30)
    return sum(counts), time.perf_counter() - start, errors


def main() -> None:
    started = time.perf_counter()
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # the cleanup function logs at INFO
    from fleetlink.api.deps import build_deps, set_deps
    from fleetlink.api.settings import Settings

    with local_stack() as stack:
        clock = ShiftedClock()
        set_deps(build_deps(Settings.from_env(), clock))
        units, put, get, sizes = request_units(stack, clock)
    print_units(units, put, get, sizes)
    marks = [time.perf_counter()]
    with local_stack() as stack:
        handler, baseline, claim, result = latency(stack)
    print_latency(handler, baseline, claim, result)
    marks.append(time.perf_counter())
    throughput()
    marks.append(time.perf_counter())
    sections = (marks[0] - started, marks[1] - marks[0], marks[2] - marks[1])
    print(
        f"\n(run time {marks[2] - started:.0f} s: request units {sections[0]:.0f} s,"
        f" latency {sections[1]:.0f} s, throughput {sections[2]:.0f} s)"
    )


if __name__ == "__main__":
    main()
