"""Every route and every cleanup duty under each kind of DynamoDB fault; the table stays sound.

For each fault kind of ``FaultPlan`` (with a rate and a seed) a fleet is driven through its whole
life: tokens, registrations, heartbeats, agent reads, tag updates, tasks created, listed, claimed,
reported and cancelled, leases and deliveries expired by the cleanup duties, and a revocation.
Every answer must be a status the route's OpenAPI document lists (so a fault ends in success or a
documented 409/429/503, never a 500), and afterwards ``check_invariants`` must find nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from fleetlink.api.deps import Deps
from fleetlink.api.document import openapi_document, route_table
from fleetlink.api.functions import function_spec
from fleetlink.core.clock import FixedClock
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.local.faults import KINDS, FaultPlan, inject_faults
from fleetlink.local.routing import RouteTable
from tests.conftest import TEST_TABLE
from tests.invariants import check_invariants
from tests.support import Api, Machine, Reply

SEED = 7
#: Rates per kind. botocore retries throttling, connection errors and timeouts with real sleeps
#: (up to 1, 2, 4 s), so those stay low; conflicts, unprocessed batches and stale reads are not
#: retried by botocore and can be frequent.
RATES = {
    "throttle": 0.03,
    "conflict": 0.15,
    "unprocessed": 0.3,
    "connect": 0.03,
    "timeout": 0.03,
    "stale": 0.5,
}
#: Timeouts of writes are applied before the answer is lost (the caller cannot know), and more
#: frequent, so that botocore's resends of applied writes are exercised on every write path.
TIMEOUT_WRITES = ",".join(
    ["timeout_applied=1.0", *(f"timeout@{op}=0.1" for op in ("PutItem", "UpdateItem", "TransactWriteItems"))]
)
MACHINES = 4
TUNNEL = {"provider": "self_hosted", "name": "web", "mode": "http", "local_target": "127.0.0.1:8080"}
ROUNDS = 3
#: Every outcome of every kind, printed once at the end of the module.
TALLY: dict[str, Counter[str]] = {}


class Driver:
    """Calls routes through the real handlers and checks each answer against the route's document."""

    def __init__(self, api: Api, kind: str) -> None:
        self.api = api
        self.kind = kind
        self.statuses: Counter[int] = Counter()
        #: Answers other than 2xx, by route and status.
        self.refusals: Counter[str] = Counter()
        self.routes: set[str] = set()
        self.undocumented: list[str] = []
        self.table = RouteTable(route_table())
        self.paths = openapi_document()["paths"]

    def check(self, method: str, path: str, reply: Reply) -> Reply:
        matched = self.table.match(method, path)
        assert matched is not None, f"{method} {path}"
        template = matched.route.template
        self.routes.add(f"{method} {template}")
        self.statuses[reply.status] += 1
        if reply.status >= 300:
            self.refusals[f"{method} {template} -> {reply.status}"] += 1
        documented = self.paths[template][method.lower()]["responses"]
        if str(reply.status) not in documented:
            self.undocumented.append(f"{method} {template} -> {reply.status}: {reply.body[:200]}")
        return reply

    def operator(self, function: str, method: str, path: str, body: Any = None, query: str = "") -> Reply:
        return self.check(method, path, self.api.operator(function, method, path, body, query))

    def signed(self, function: str, machine: Machine, method: str, path: str, body: Any = None) -> Reply:
        return self.check(method, path, self.api.signed(function, machine, method, path, body))

    def public(self, function: str, path: str) -> Reply:
        return self.check("GET", path, self.api.call(function, "GET", path))

    def register(self, machine: Machine, token: str | None) -> Reply:
        return self.check("POST", "/v1/agents/register", self.api.register(machine, token))


def drive(driver: Driver, deps: Deps, clock: FixedClock, duties: Counter[str]) -> None:
    """One fleet's life, every route and duty at least once (failures are answers, not exceptions)."""
    api = driver.api
    reply = driver.operator("registration", "POST", "/v1/registration-tokens", {"max_uses": MACHINES + 2})
    token = reply.json["token"] if reply.status == 201 else api.mint_token(max_uses=MACHINES + 2)
    reply_token = reply
    machines = [Machine(f"{driver.kind}-{i}") for i in range(MACHINES)]
    for machine in machines:
        driver.register(machine, token)
    machines = [m for m in machines if m.agent_id]
    agent_ids = [m.agent_id for m in machines]
    for machine in machines:
        path = f"/v1/agents/{machine.agent_id}/heartbeat"
        driver.signed("heartbeat", machine, "POST", path, {"status": "ok", "metrics": {"cpu": 0.5}})
    driver.operator("operator", "GET", "/v1/agents", query="limit=10")
    for machine in machines[:2]:
        driver.operator("operator", "GET", f"/v1/agents/{machine.agent_id}")
        tags = {"env": "test", "rack": machine.name}
        driver.operator("operator", "PUT", f"/v1/agents/{machine.agent_id}/tags", {"tags": tags})
    task_ids = []
    for body in (
        {"command": "echo hi", "targets": {"agent_ids": agent_ids}},
        {"command": "sleep 1", "targets": {"tags": {"env": "test"}}, "max_concurrency": 1, "max_retries": 1},
        {"command": "true", "targets": {"agent_ids": agent_ids[:2]}, "delivery_timeout_seconds": 60},
    ):
        reply = driver.operator("tasks", "POST", "/v1/tasks", {"type": "shell", **body})
        if reply.status == 201:
            task_ids.append(reply.json["task_id"])
    for round_ in range(ROUNDS):
        for machine in machines[: MACHINES - 1]:  # the last one never claims: its deliveries expire
            claim = f"/v1/agents/{machine.agent_id}/executions/claim"
            reply = driver.signed("tasks", machine, "POST", claim, {"max": 2, "running_executions": []})
            leases = reply.json["executions"] if reply.status == 200 else []
            for lease in leases[: 1 if round_ == 0 else 2]:  # round 0 leaves a lease to expire
                execution = f"/v1/executions/{lease['execution_id']}"
                driver.signed("tasks", machine, "GET", execution)
                chunk = {
                    "attempt": lease["attempt"],
                    "seq": 1,
                    "parts": [{"stream": "stdout", "data": "o\n"}],
                }
                for _ in range(2):  # the second is a resend: recognised, not a conflict
                    driver.signed("tasks", machine, "POST", f"{execution}/output", chunk)
                now = clock.now_ms()
                result = {"attempt": lease["attempt"], "status": "succeeded", "exit_code": 0}
                result |= {"output": "ok\n", "started_at": now, "finished_at": now}
                driver.signed("tasks", machine, "POST", f"{execution}/result", result)
                driver.operator("tasks", "GET", f"{execution}/output", query="after=0")
                driver.operator("tasks", "GET", f"{execution}/attempts")
                driver.operator("tasks", "GET", f"{execution}/attempts/{lease['attempt']}")
        clock.advance(10 * 60 * 1000)  # past leases (timeout 300 s + grace) and delivery deadlines
        for duty in function_spec("cleanup").duties:
            duties[_run_duty(duty.run, deps)] += 1
    driver.operator("tasks", "GET", "/v1/tasks", query="limit=5")
    for task_id in task_ids:
        driver.operator("tasks", "GET", f"/v1/tasks/{task_id}")
    for task_id in task_ids[:2]:
        driver.operator("tasks", "POST", f"/v1/tasks/{task_id}/cancel")
    drive_capabilities(driver, machines, token_reply=reply_token)
    if machines:
        driver.operator("operator", "POST", f"/v1/agents/{machines[-1].agent_id}/revoke")
    for path in ("/v1/health", "/v1/health/ready", "/v1/openapi.json"):
        driver.public("operator", path)


def drive_capabilities(driver: Driver, machines: list[Machine], token_reply: Reply) -> None:
    """Tokens, identity, tunnels and relay routes, each at least once."""
    driver.operator("registration", "GET", "/v1/registration-tokens")
    if token_reply.status == 201:
        driver.operator("registration", "DELETE", f"/v1/registration-tokens/{token_reply.json['token_id']}")
    if not machines:
        return
    node, agent_id = machines[0], machines[0].agent_id
    driver.operator("registration", "POST", f"/v1/agents/{agent_id}/recovery-token", {"ttl_seconds": 600})
    new = Machine(f"{driver.kind}-rotated")
    if driver.check("POST", f"/v1/agents/{agent_id}/keys", driver.api.rotate_key(node, new)).status == 200:
        node.key = new.key
    reply = driver.operator("tunnels", "POST", f"/v1/agents/{agent_id}/tunnels", TUNNEL)
    tunnel = f"/v1/tunnels/{reply.json['tunnel_id'] if reply.status == 201 else 'tun_' + '0' * 26}"
    driver.signed("tunnels", node, "GET", f"/v1/agents/{agent_id}/tunnels")
    driver.signed("tunnels", node, "PUT", f"{tunnel}/status", {"health": "up"})
    now = driver.api.clock.now_ms()
    event = {"level": "info", "event_type": "tunnel_start", "message": "started", "created_at": now}
    driver.signed("tunnels", node, "POST", f"{tunnel}/events", {"events": [event]})
    for path in ("/v1/tunnels", "/v1/tunnels/events", "/v1/tunnels/health", tunnel, f"{tunnel}/events"):
        driver.operator("tunnels", "GET", path)
    driver.operator("tunnels", "PATCH", tunnel, {"enabled": False})
    driver.operator("tunnels", "DELETE", tunnel)
    driver.operator("relay", "PUT", "/v1/relay/collections/inv", {"readers": "fleet"})
    driver.operator("relay", "GET", "/v1/relay/collections/inv")
    hlc = f"{now:013d}-0001"
    record = {"record_id": new_id(IdPrefix.RECORD), "collection": "inv", "key": "disk", "hlc": hlc}
    driver.signed("relay", node, "POST", "/v1/relay/batch", {"records": [record | {"value": {"gb": 1}}]})
    record = {**record, "record_id": new_id(IdPrefix.RECORD), "hlc": f"{now:013d}-0002"}
    driver.signed("relay", node, "POST", "/v1/relay/immediate", record | {"value": {"gb": 2}})
    driver.signed("relay", node, "POST", "/v1/relay/query", {"collection": "inv"})
    driver.operator("relay", "POST", "/v1/relay/records/query", {"collection": "inv"})
    driver.operator("relay", "GET", f"/v1/relay/nodes/{agent_id}")
    driver.operator("operator", "GET", "/v1/audit", query="limit=5")
    driver.operator("operator", "GET", "/v1/whoami")


def _run_duty(run: Callable[[Deps], int], deps: Deps) -> str:
    """A duty's outcome: ``ok``, or the error it raised (the next round retries; invariants must hold)."""
    try:
        run(deps)
    except Exception as error:
        return f"raised {type(error).__name__}"
    return "ok"


@pytest.mark.parametrize("kind", KINDS)
def test_every_route_and_duty_under_faults_keeps_the_contract_and_the_invariants(
    kind: str, api: Api, deps: Deps, clock: FixedClock
) -> None:
    # Given a fresh table and faults of one kind at its rate, from a fixed seed
    driver = Driver(api, kind)
    duties: Counter[str] = Counter()
    extra = f",{TIMEOUT_WRITES}" if kind == "timeout" else ""
    with inject_faults(FaultPlan.parse(f"{kind}={RATES[kind]},seed={SEED}{extra}")) as injector:
        # When a fleet lives its life through every route and duty
        drive(driver, deps, clock, duties)
    # Then every answer is one its route documents, and the table is sound
    injected = sum(injector.counts.values())
    TALLY[kind] = Counter(
        {f"status {s}": n for s, n in driver.statuses.items()}
        | {f"duty {d}": n for d, n in duties.items()}
        | {"routes": len(driver.routes), "requests": driver.statuses.total(), "injected": injected}
    )
    print(f"\n{kind}: rate {RATES[kind]}, {json.dumps(dict(sorted(TALLY[kind].items())))}")
    print(injector.summary())
    for refusal, n in driver.refusals.most_common():
        print(f"  refused {n}x {refusal}")
    violations = check_invariants(TEST_TABLE, boto3.client("dynamodb"))
    for line in [*driver.undocumented, *violations]:
        print(f"  {line[:240]}")
    assert (driver.undocumented, violations) == ([], [])
    assert len(driver.routes) == len(route_table()) - 2, sorted(driver.routes)
    assert injected > 0
    assert kind != "timeout" or any(k == "timeout_applied" for k, _ in injector.counts)
