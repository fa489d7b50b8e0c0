"""Dev stack memory over a long day: RSS before and after 1,000 registrations and 1,000 tag updates.

Runs ``fleetlink dev`` in this process (moto in memory) on loopback, registers N agents on one
token (each registration is a transaction that also updates the token) and replaces each agent's
tags (a transaction per update), then prints the process's RSS and peak RSS. Goal: <= 300 MiB.

    python bench/bench_dev_memory.py [--agents 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import httpx

from fleetlink.auth.keys import generate_private_key, public_key_pem
from fleetlink.auth.signatures import sign_request
from fleetlink.core.entities import KeyAlg
from fleetlink.local.server import DevStack

OPERATOR_TOKEN = "bench-operator-token"
GOAL_MIB = 300


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def register(client: httpx.Client, url: str, token: str, index: int) -> str:
    key = generate_private_key(KeyAlg.ED25519)
    fingerprint = f"{index:064x}"
    body = json.dumps(
        {
            "fingerprint": fingerprint,
            "public_key": public_key_pem(key),
            "key_alg": "ed25519",
            "hardware": {
                "machine_id": f"m-{index}",
                "hostname": f"node-{index}",
                "os": "linux",
                "arch": "arm64",
            },
            "tags": {"env": "bench"},
            "agent_version": "0.1.0",
        }
    ).encode()
    target = f"{url}/v1/agents/register"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    headers |= sign_request(
        "POST", target, headers, body, private_key=key, key_id=fingerprint, key_alg=KeyAlg.ED25519
    )
    reply = client.post(target, content=body, headers=headers)
    reply.raise_for_status()
    return str(reply.json()["agent_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    agents = parser.parse_args().agents
    with DevStack(port=0, cleanup_every_s=0, access_log=None, operator_token=OPERATOR_TOKEN) as stack:
        operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        with httpx.Client(timeout=30) as client:
            client.get(f"{stack.url}/v1/health").raise_for_status()
            before, _ = rss_mib()
            reply = client.post(
                f"{stack.url}/v1/registration-tokens", json={"max_uses": agents}, headers=operator
            )
            reply.raise_for_status()
            token = reply.json()["token"]
            started = time.perf_counter()
            agent_ids = [register(client, stack.url, token, i) for i in range(agents)]
            registered_s = time.perf_counter() - started
            after_registrations, _ = rss_mib()
            started = time.perf_counter()
            for i, agent_id in enumerate(agent_ids):
                tags = {"env": "bench", "rack": f"r{i % 20}", "zone": f"z{i % 3}"}
                client.put(f"{stack.url}/v1/agents/{agent_id}/tags", json={"tags": tags}, headers=operator)
            tagged_s = time.perf_counter() - started
            after, peak = rss_mib()
    print(f"dev stack memory: {agents} registrations, then {agents} tag updates (one token, shared)")
    print(f"  RSS before:              {before:7.1f} MiB")
    print(f"  RSS after registrations: {after_registrations:7.1f} MiB  ({registered_s:.1f} s)")
    print(f"  RSS after tag updates:   {after:7.1f} MiB  ({tagged_s:.1f} s)")
    print(f"  peak RSS:                {peak:7.1f} MiB  (goal <= {GOAL_MIB} MiB)")


if __name__ == "__main__":
    main()
