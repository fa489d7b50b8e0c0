"""Warm duration of each function at 256 / 512 / 1024 MB, derived from CPU time measured here.

Lambda gives a function CPU in proportion to its memory (1,769 MB = one vCPU), so a warm invocation
at M MB takes about ``cpu_s / share(M) + wait_s`` with ``share(M) = min(1, M / 1769)``. What is
measured, per function, on a representative request through its real handler (in-process, moto):

- ``cpu_s``: the thread's CPU time outside DynamoDB calls (routing, validation, signature check,
  models), plus the DynamoDB client's own CPU per call (serialising and parsing, measured on a boto3
  client with botocore's Stubber, which skips the network) times the calls the request makes;
- ``wait_s``: not measurable here: an assumed in-Region DynamoDB round trip of ``ROUND_TRIP_S`` per
  call, which does not scale with memory.

moto's own work (it runs in this process) is excluded. This machine's core is not a Graviton core;
the absolute figures are estimates, the ratios between memory sizes are what the defaults rest on.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import BenchAgent, Stack, header, local_stack, pynamodb_clients, save_results

MEMORY_SIZES = (256, 512, 1024)
FULL_CPU_MB = 1769
ROUND_TRIP_S = 0.004
RUNS = 60
WARMUP = 10


def share(memory_mb: int) -> float:
    return min(1.0, memory_mb / FULL_CPU_MB)


def client_cpu_per_call(runs: int = 300) -> float:
    """CPU seconds a botocore DynamoDB client spends on one GetItem (serialise + parse), no network."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("dynamodb", region_name="us-east-1")
    key = {"pk": {"S": "AGENT#agt_x"}, "sk": {"S": "STATE#PROFILE"}}
    item = {**key, "name": {"S": "edge-1"}, "state": {"S": "active"}, "n": {"N": "1"}}
    with Stubber(client) as stub:
        for _ in range(runs + 20):
            stub.add_response("get_item", {"Item": item}, {"TableName": "t", "Key": key})
        for _ in range(20):
            client.get_item(TableName="t", Key=key)
        start = time.thread_time()
        for _ in range(runs):
            client.get_item(TableName="t", Key=key)
        return (time.thread_time() - start) / runs


class CpuOutsideDynamo:
    """Thread CPU time of a call, minus the CPU spent inside DynamoDB calls (client + moto)."""

    def __init__(self) -> None:
        self.inside = 0.0
        self.calls = 0
        self._started: list[float] = []
        self._clients = pynamodb_clients()

    def _begin(self, **_: Any) -> None:
        self._started.append(time.thread_time())

    def _end(self, **_: Any) -> None:
        self.inside += time.thread_time() - self._started.pop()
        self.calls += 1

    def measure(self, action: Callable[[], Any]) -> tuple[float, int]:
        self._clients = pynamodb_clients()
        for client in self._clients:
            client.meta.events.register_first("before-parameter-build.dynamodb", self._begin)
            client.meta.events.register_last("after-call.dynamodb", self._end)
        self.inside, self.calls = 0.0, 0
        start = time.thread_time()
        try:
            action()
        finally:
            total = time.thread_time() - start
            for client in self._clients:
                client.meta.events.unregister("before-parameter-build.dynamodb", self._begin)
                client.meta.events.unregister("after-call.dynamodb", self._end)
        return total - self.inside, self.calls


def relay_record(n: int) -> dict[str, Any]:
    """A typical small record (~150 bytes of JSON value), as a node sends it."""
    from fleetlink.core.ids import IdPrefix, new_id
    from fleetlink.core.relay.hlc import Hlc

    value = {"n": n, "host": f"web-{n % 97:02d}", "disk_free_gb": n % 512, "status": "ok", "tags": ["a", "b"]}
    hlc = Hlc(int(time.time() * 1000), 0)
    return {
        "record_id": new_id(IdPrefix.RECORD),
        "collection": "bench",
        "key": f"host/{n:06d}",
        "hlc": str(hlc),
        "value": value,
    }


def requests(stack: Stack) -> dict[str, Callable[[], Any]]:
    """One representative warm request per function, each call a fresh one."""
    from fleetlink.local.events import scheduled_event

    token = stack.mint_token(max_uses=RUNS + WARMUP + 5)
    agent = BenchAgent(1)
    stack.register(agent, token)
    counter = iter(range(2, 10**6))

    def register() -> Any:
        return stack.register(BenchAgent(next(counter)), token)

    def claim() -> Any:
        assert agent.agent_id is not None
        body = json.dumps({"max": 1}).encode()
        path = f"/v1/agents/{agent.agent_id}/executions/claim"
        return stack.invoke("tasks", agent.signed_event("POST", path, body, key_id=agent.agent_id))

    tunnel = stack.operator(
        "tunnels",
        "POST",
        f"/v1/agents/{agent.agent_id}/tunnels",
        {"provider": "self_hosted", "name": "web", "local_target": "127.0.0.1:8080"},
    )
    healths = iter(["up", "down"] * 10**6)

    def report_status() -> Any:
        """A tunnel's health changing (an unchanged report writes nothing)."""
        assert agent.agent_id is not None
        body = json.dumps({"health": next(healths)}).encode()
        path = f"/v1/tunnels/{tunnel['tunnel_id']}/status"
        return stack.invoke("tunnels", agent.signed_event("PUT", path, body, key_id=agent.agent_id))

    def send_record() -> Any:
        """One record sent alone, as the sync worker does when a node writes now and then."""
        assert agent.agent_id is not None
        body = json.dumps(relay_record(next(counter))).encode()
        event = agent.signed_event("POST", "/v1/relay/immediate", body, key_id=agent.agent_id)
        return stack.invoke("relay", event)

    return {
        "registration": register,
        "heartbeat": lambda: stack.invoke("heartbeat", agent.heartbeat_event(0)),
        "tasks": claim,
        "operator": lambda: stack.operator("operator", "GET", f"/v1/agents/{agent.agent_id}"),
        "tunnels": report_status,
        "relay": send_record,
        "cleanup": lambda: stack.handler("cleanup")(
            scheduled_event("lease-expiry"), stack.contexts["cleanup"]
        ),
    }


def main() -> None:
    from fleetlink.api.functions import FUNCTIONS

    per_call = client_cpu_per_call()
    results: dict[str, dict[str, Any]] = {}
    with local_stack() as stack:
        stack.handler("cleanup")
        work = requests(stack)
        meter = CpuOutsideDynamo()
        for name, action in work.items():
            for _ in range(WARMUP):
                action()
            samples = [meter.measure(action) for _ in range(RUNS)]
            cpu = statistics.median(s[0] for s in samples)
            calls = max(s[1] for s in samples)
            results[name] = {"cpu_outside_s": cpu, "dynamodb_calls": calls}

    header(f"Warm duration by memory (median of {RUNS}; CPU share = memory / {FULL_CPU_MB} MB)")
    print(
        f"  DynamoDB client CPU per call (Stubber, no network): {per_call * 1000:.2f} ms;"
        f" assumed round trip {ROUND_TRIP_S * 1000:.0f} ms per call"
    )
    print(
        f"  {'function':14} {'calls':>5} {'cpu ms':>7}"
        + "".join(f" {m:>7} MB" for m in MEMORY_SIZES)
        + "   registry default"
    )
    for name, figures in results.items():
        cpu = figures["cpu_outside_s"] + figures["dynamodb_calls"] * per_call
        wait = figures["dynamodb_calls"] * ROUND_TRIP_S
        durations = {m: cpu / share(m) + wait for m in MEMORY_SIZES}
        figures |= {"cpu_s": cpu, "wait_s": wait, "duration_s": {str(m): d for m, d in durations.items()}}
        memory = FUNCTIONS[name].memory_mb if name in FUNCTIONS else None
        print(
            f"  {name:14} {figures['dynamodb_calls']:5d} {cpu * 1000:7.2f}"
            + "".join(f" {d * 1000:7.1f} ms" for d in durations.values())
            + f"   {memory} MB"
        )
    gb_s = {
        name: {str(m): m / 1024 * f["duration_s"][str(m)] for m in MEMORY_SIZES}
        for name, f in results.items()
    }
    print("  GB-seconds per invocation (unrounded; Lambda bills duration in 1 ms steps):")
    for name, values in gb_s.items():
        print(f"  {name:14} " + "  ".join(f"{m} MB {v * 1e6:7.0f} µGB-s" for m, v in values.items()))
    save_results(
        "durations",
        {"round_trip_s": ROUND_TRIP_S, "client_cpu_per_call_s": per_call, "functions": results},
    )


if __name__ == "__main__":
    main()
