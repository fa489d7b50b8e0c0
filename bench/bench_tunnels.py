"""Request units of the tunnel routes, through the real handlers on moto, counted by CapacityMeter;
and the idle heartbeat's units before and after an agent has tunnels.

Same-run baselines: a bare PutItem of 100 bytes (1 WCU) and an eventually consistent GetItem of it
(0.5 RCU), and the idle heartbeat of the same agent before any tunnel existed (the heartbeat this
issue started from: the tunnels version is answered from the presence item the signature check
already reads, so the two must be equal, call for call).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import BenchAgent, Stack, header, local_stack
from bench_capacity import LABEL, call_text, measure, row, self_check
from capacity import CapacityMeter, Measurement
from cost_model import cost_line

FLEET_AGENTS = 10
TUNNELS_PER_AGENT = 3
EVENTS_PER_BATCH = 20
#: The idle cost line's assumption: how often one of an agent's tunnels changes health.
HEALTH_CHANGES_PER_DAY = 1
SECRET = "bench-provider-credential-0123456789abcdef0123456789abcdef"


class SealingAgent(BenchAgent):
    """A bench agent that registers an X25519 encryption key (secrets can be sealed to it)."""

    def registration_body(self) -> bytes:
        from fleetlink.auth.sealing import encryption_public_key_pem, generate_encryption_key

        body = json.loads(super().registration_body())
        body["encryption_public_key"] = encryption_public_key_pem(generate_encryption_key())
        return json.dumps(body).encode()


def tunnel_body(n: int, *, secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "self_hosted" if n % 2 == 0 else "ngrok",
        "name": f"web-{n}",
        "local_target": "127.0.0.1:8080",
        "routes": [
            {"path_prefix": "/api", "local_target": "127.0.0.1:8081", "priority": 1},
            {"path_prefix": "/api/admin", "local_target": "127.0.0.1:8082"},
        ],
    }
    if secret:
        body["secret"] = SECRET
    return body


def signed(stack: Stack, agent: BenchAgent, method: str, path: str, body: Any = None) -> dict[str, Any]:
    raw = json.dumps(body).encode() if body is not None else b""
    assert agent.agent_id is not None
    response = stack.invoke("tunnels", agent.signed_event(method, path, raw, key_id=agent.agent_id))
    answer: dict[str, Any] = json.loads(response["body"]) if response.get("body") else {}
    return answer


def idle_heartbeat(
    meter: CapacityMeter, stack: Stack, agent: BenchAgent, label: str, beats: range
) -> Measurement:
    """The costliest of a few steady heartbeats (they should all be identical)."""

    def beat(i: int) -> Callable[[], object]:
        return lambda: stack.invoke("heartbeat", agent.heartbeat_event(i))

    found = [measure(meter, f"{label}{i}", beat(i)) for i in beats]
    return max(found, key=lambda m: (m.wcu + m.gsi_wcu, m.rcu))


def operations(meter: CapacityMeter, stack: Stack) -> dict[str, Measurement]:
    results: dict[str, Measurement] = {}
    token = stack.mint_token(max_uses=FLEET_AGENTS + 1)
    agents = [SealingAgent(i) for i in range(FLEET_AGENTS)]
    for agent in agents:
        stack.register(agent, token)
        stack.invoke("heartbeat", agent.heartbeat_event(0))
    first = agents[0]
    results["idle heartbeat, no tunnel yet (baseline)"] = idle_heartbeat(
        meter, stack, first, "hb-before", range(1, 6)
    )

    created: list[dict[str, Any]] = []

    def create(agent: BenchAgent, n: int, secret: bool = False) -> Callable[[], None]:
        path = f"/v1/agents/{agent.agent_id}/tunnels"
        return lambda: created.append(stack.operator("tunnels", "POST", path, tunnel_body(n, secret=secret)))

    results["create (2 routes)"] = measure(meter, "create", create(first, 0))
    results["create (2 routes, secret sealed)"] = measure(
        meter, "create-secret", create(first, 1, secret=True)
    )
    for n in range(2, TUNNELS_PER_AGENT):
        create(first, n)()
    for agent in agents[1:]:
        for n in range(TUNNELS_PER_AGENT):
            create(agent, n)()
    tunnel_id = created[0]["tunnel_id"]
    results["idle heartbeat, 3 tunnels (after)"] = idle_heartbeat(
        meter, stack, first, "hb-after", range(6, 11)
    )

    results[f"desired-state fetch ({TUNNELS_PER_AGENT} tunnels)"] = measure(
        meter, "desired", lambda: signed(stack, first, "GET", f"/v1/agents/{first.agent_id}/tunnels")
    )
    status_path = f"/v1/tunnels/{tunnel_id}/status"
    report = {"health": "up", "public_url": "http://127.0.0.1:18080"}
    results["status report, changed"] = measure(
        meter, "status", lambda: signed(stack, first, "PUT", status_path, report)
    )
    results["status report, unchanged"] = measure(
        meter, "status-same", lambda: signed(stack, first, "PUT", status_path, report)
    )
    now_ms = int(json.loads(stack.invoke("heartbeat", first.heartbeat_event(99))["body"])["server_time"])
    batch = {
        "events": [
            {
                "level": "error" if i % 5 == 0 else "info",
                "event_type": "error" if i % 5 == 0 else "health_up",
                "message": f"event {i}",
                "data": {"attempt": i},
                "created_at": now_ms - 1000 + i,
            }
            for i in range(EVENTS_PER_BATCH)
        ]
    }
    results[f"events batch ({EVENTS_PER_BATCH}, 4 errors)"] = measure(
        meter, "events", lambda: signed(stack, first, "POST", f"/v1/tunnels/{tunnel_id}/events", batch)
    )
    one = {"events": [{**batch["events"][1], "event_type": "health_down", "message": "down"}]}
    results["events batch (1 health change)"] = measure(
        meter, "event", lambda: signed(stack, first, "POST", f"/v1/tunnels/{tunnel_id}/events", one)
    )
    results["tunnel read (GET /v1/tunnels/{id})"] = measure(
        meter, "read", lambda: stack.operator("tunnels", "GET", f"/v1/tunnels/{tunnel_id}")
    )
    results["tunnel events, page of 50"] = measure(
        meter, "tunnel-events", lambda: stack.operator("tunnels", "GET", f"/v1/tunnels/{tunnel_id}/events")
    )
    total = FLEET_AGENTS * TUNNELS_PER_AGENT
    results[f"fleet list: active tunnels with health ({total})"] = measure(
        meter,
        "fleet",
        lambda: stack.operator("tunnels", "GET", "/v1/tunnels", query="enabled=true&limit=100"),
    )
    results[f"fleet health summary ({total} tunnels)"] = measure(
        meter, "summary", lambda: stack.operator("tunnels", "GET", "/v1/tunnels/health")
    )
    results["fleet recent events (24 h, page of 50)"] = measure(
        meter, "fleet-events", lambda: stack.operator("tunnels", "GET", "/v1/tunnels/events")
    )
    results["fleet errors of the last 24 h"] = measure(
        meter,
        "fleet-errors",
        lambda: stack.operator("tunnels", "GET", "/v1/tunnels/events", query="errors=true"),
    )
    results["patch: disable"] = measure(
        meter,
        "patch",
        lambda: stack.operator("tunnels", "PATCH", f"/v1/tunnels/{tunnel_id}", {"enabled": False}),
    )
    results["delete"] = measure(
        meter,
        "delete",
        lambda: stack.invoke(
            "tunnels", stack_operator_event("DELETE", f"/v1/tunnels/{tunnel_id}"), expect=204
        ),
    )
    return results


def stack_operator_event(method: str, path: str) -> dict[str, Any]:
    from _support import OPERATOR_TOKEN, http_event

    return http_event(method, path, headers={"authorization": f"Bearer {OPERATOR_TOKEN}"})


def main() -> None:
    with local_stack() as stack:
        meter = CapacityMeter(stack.client)
        put, get = self_check(meter, stack.client)
        results = operations(meter, stack)
    header("Tunnel request units (AWS rules from item sizes, CapacityMeter on moto)")
    columns = ("RCU", "WCU", "GSI WCU", "calls", "RCU/get", "WCU/put", "moto")
    widths = (5, 5, 7, 5, 8, 8, 6)
    print(
        f"  {'':{LABEL}}"
        + "".join(f" {n:>{w}}" for n, w in zip(columns, widths, strict=True))
        + "   calls made"
    )
    print(row("bare GetItem, 100 B (baseline)", get, put, get))
    print(row("bare PutItem, 100 B (baseline)", put, put, get))
    for label, measurement in results.items():
        print(row(label[:LABEL], measurement, put, get))
    before = results["idle heartbeat, no tunnel yet (baseline)"]
    after = results["idle heartbeat, 3 tunnels (after)"]
    same = (before.rcu, before.wcu, before.gsi_wcu, before.operations()) == (
        after.rcu,
        after.wcu,
        after.gsi_wcu,
        after.operations(),
    )
    print(
        f"  idle heartbeat: before {before.rcu:g} RCU + {before.wcu:g} WCU"
        f" ({', '.join(before.operations())}),"
        f" after {after.rcu:g} RCU + {after.wcu:g} WCU -> "
        + ("SAME (goal met)" if same else "GREW (goal missed)")
    )
    header("Per call")
    for label, measurement in results.items():
        print(f"  {label}:\n      " + " | ".join(call_text(call) for call in measurement.calls))
    save_cost_line(results, same)


def save_cost_line(results: dict[str, Measurement], heartbeat_unchanged: bool) -> None:
    """An agent with tunnels adds nothing to its idle heartbeat (measured above); what it sends is a
    status report and an event each time a tunnel's health changes (assumed rate)."""
    if not heartbeat_unchanged:
        raise SystemExit("the idle heartbeat grew with tunnels: the tunnels line cannot be per request")
    status, event = results["status report, changed"], results["events batch (1 health change)"]
    per_change = [status, event]
    requests = HEALTH_CHANGES_PER_DAY * 30 * len(per_change)
    cost_line(
        "tunnels",
        f"tunnels: {TUNNELS_PER_AGENT} per agent, idle heartbeat unchanged; {HEALTH_CHANGES_PER_DAY} health"
        " change a day (status report + 1-event batch, assumed rate); desired state fetched only on change",
        function="tunnels",
        requests_per_month=requests,
        rru=sum(m.rcu for m in per_change) / len(per_change),
        wru=sum(m.wcu + m.gsi_wcu for m in per_change) / len(per_change),
    )


if __name__ == "__main__":
    main()
