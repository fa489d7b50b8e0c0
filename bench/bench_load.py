"""Load: N simulated agents heartbeating, claiming and reporting against `fleetlink dev`, faults on.

The dev stack (moto, the real handlers) serves HTTP on loopback in this process; worker threads
play N registered agents round robin (heartbeat, claim up to 2 executions, report each), while an
operator sends a fan-out task to every agent every few seconds. After ``--seconds`` (bounded) it
prints requests, error rate by status, p50/p99 latency, the faults injected, and the table
invariant check.

    python bench/bench_load.py [--agents 200] [--seconds 60] [--workers 8] [--faults SPEC]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.invariants

from tests.invariants import check_invariants

from fleetlink.auth.keys import PrivateKey, generate_private_key, public_key_pem
from fleetlink.auth.signatures import sign_request
from fleetlink.core.entities import KeyAlg
from fleetlink.local.faults import FaultPlan
from fleetlink.local.server import DevStack

OPERATOR_TOKEN = "bench-operator-token"
DEFAULT_FAULTS = "throttle=0.01,conflict=0.02,unprocessed=0.05,timeout=0.005,connect=0.005,stale=0.1,seed=7"
TASK_EVERY_S = 5.0
MAX_SECONDS = 600


class Recorder:
    """Status and latency of every request, by route kind."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.latencies_ms: list[float] = []

    def call(self, kind: str, send: Any) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            reply: httpx.Response | None = send()
            status = reply.status_code if reply is not None else 0
        except httpx.HTTPError:
            reply, status = None, 0  # transport error: counted as status 0
        elapsed = (time.perf_counter() - started) * 1000
        with self.lock:
            self.statuses[(kind, status)] += 1
            self.latencies_ms.append(elapsed)
        return reply


class Agent:
    def __init__(self, index: int) -> None:
        self.key: PrivateKey = generate_private_key(KeyAlg.ED25519)
        self.fingerprint = f"{index:064x}"
        self.index = index
        self.agent_id = ""

    def signed(self, client: httpx.Client, url: str, payload: Any, key_id: str, extra: dict[str, str]) -> Any:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **extra}
        headers |= sign_request(
            "POST", url, headers, body, private_key=self.key, key_id=key_id, key_alg=KeyAlg.ED25519
        )
        return client.post(url, content=body, headers=headers)

    def register(self, client: httpx.Client, base: str, token: str) -> None:
        hardware = {
            "machine_id": f"m-{self.index}",
            "hostname": f"n{self.index}",
            "os": "linux",
            "arch": "arm64",
        }
        payload = {
            "fingerprint": self.fingerprint,
            "public_key": public_key_pem(self.key),
            "key_alg": "ed25519",
            "hardware": hardware,
            "tags": {"env": "load"},
            "agent_version": "0.1.0",
        }
        for _ in range(5):  # faults may refuse a registration: retry a few times
            reply = self.signed(
                client,
                f"{base}/v1/agents/register",
                payload,
                self.fingerprint,
                {"Authorization": f"Bearer {token}"},
            )
            if reply.status_code == 201:
                self.agent_id = reply.json()["agent_id"]
                return
            time.sleep(0.1)

    def step(self, client: httpx.Client, base: str, record: Recorder) -> None:
        """One round: heartbeat, claim, report what was claimed."""
        prefix = f"{base}/v1/agents/{self.agent_id}"
        record.call(
            "heartbeat",
            lambda: self.signed(client, f"{prefix}/heartbeat", {"status": "ok"}, self.agent_id, {}),
        )
        claim = {"max": 2, "running_executions": []}
        reply = record.call(
            "claim", lambda: self.signed(client, f"{prefix}/executions/claim", claim, self.agent_id, {})
        )
        leases = reply.json()["executions"] if reply is not None and reply.status_code == 200 else []
        for lease in leases:
            now = int(time.time() * 1000)
            result = {"attempt": lease["attempt"], "status": "succeeded", "exit_code": 0, "output": "ok\n"}
            result |= {"started_at": now, "finished_at": now}
            url = f"{base}/v1/executions/{lease['execution_id']}/result"
            record.call(
                "report", lambda url=url, result=result: self.signed(client, url, result, self.agent_id, {})
            )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--faults", default=DEFAULT_FAULTS)
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # the handlers' INFO lines drown the figures
    seconds = min(args.seconds, MAX_SECONDS)
    plan = FaultPlan.parse(args.faults) if args.faults else None
    record = Recorder()
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    with DevStack(
        port=0, cleanup_every_s=5, access_log=None, operator_token=OPERATOR_TOKEN, faults=plan
    ) as stack:
        base = stack.url
        with httpx.Client(timeout=60) as client:
            token = client.post(
                f"{base}/v1/registration-tokens", json={"max_uses": args.agents}, headers=operator
            )
            token.raise_for_status()
            agents = [Agent(i) for i in range(args.agents)]
            started = time.perf_counter()
            for agent in agents:
                agent.register(client, base, token.json()["token"])
            agents = [a for a in agents if a.agent_id]
            print(f"registered {len(agents)}/{args.agents} agents in {time.perf_counter() - started:.1f} s")
        deadline = time.monotonic() + seconds
        stop = threading.Event()

        def work(share: list[Agent]) -> None:
            with httpx.Client(timeout=60) as client:
                while not stop.is_set() and time.monotonic() < deadline:
                    for agent in share:
                        if time.monotonic() >= deadline:
                            return
                        agent.step(client, base, record)

        def operate() -> None:
            with httpx.Client(timeout=60) as client:
                task = {"type": "shell", "command": "true", "targets": {"tags": {"env": "load"}}}
                while not stop.wait(TASK_EVERY_S) and time.monotonic() < deadline:
                    record.call(
                        "create task", lambda: client.post(f"{base}/v1/tasks", json=task, headers=operator)
                    )

        threads = [
            threading.Thread(target=work, args=(agents[i :: args.workers],)) for i in range(args.workers)
        ]
        threads.append(threading.Thread(target=operate))
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 120)
        stop.set()
        elapsed = time.perf_counter() - started
        stack.tick()  # one last cleanup round before the check
        violations = check_invariants(stack.table_name, boto3.client("dynamodb"))
        injected = stack.injector.summary() if stack.injector else ""
    total = record.statuses.total()
    by_status = Counter[int]()
    for (_, status), count in record.statuses.items():
        by_status[status] += count
    errors = sum(count for status, count in by_status.items() if status >= 400 or status == 0)
    print(f"load: {len(agents)} agents, {args.workers} workers, {elapsed:.0f} s")
    print(f"  faults: {args.faults or 'none'}")
    print(f"  requests: {total} ({total / elapsed:.0f}/s); error rate {errors / max(total, 1):.2%}")
    print(f"  by status: {dict(sorted(by_status.items()))}")
    for (kind, status), count in sorted(record.statuses.items()):
        print(f"    {kind:<12} {status}: {count}")
    p50, p99 = percentile(record.latencies_ms, 0.5), percentile(record.latencies_ms, 0.99)
    mean = statistics.fmean(record.latencies_ms) if record.latencies_ms else 0.0
    print(f"  latency ms: p50 {p50:.1f}, p99 {p99:.1f}, mean {mean:.1f}")
    print("  faults injected:\n" + "\n".join(f"    {line}" for line in injected.splitlines()))
    print(f"  invariants: {'sound' if not violations else f'{len(violations)} violations'}")
    for line in violations[:20]:
        print(f"    {line}")


if __name__ == "__main__":
    main()
