"""Relay sync end to end over real HTTP on `fleetlink dev`: agents registered and run with the CLI,
records written with `fleetlink records put` and read by another agent with `fleetlink records query`,
read policies, lag in `fleetlink agents ls` / `fleetlink agent status`, hostile requests, and an
outage of the stack while a node writes 5,000 records."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetlink.agent.identity import IdentityStore
from fleetlink.agent.relay.service import RelayService
from fleetlink.agent.relay.store import RecordStore
from fleetlink.auth.httpx_auth import HttpxSignatureAuth
from fleetlink.client.backoff import Backoff
from fleetlink.client.operator import OperatorClient
from fleetlink.client.relay import RelayClient
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.relay.records import MAX_VALUE_BYTES
from tests.e2e.conftest import REPO, DevServer, start_dev_process

pytestmark = [pytest.mark.e2e]
OPERATOR_TOKEN = "e2e-relay-operator-token"
#: Guards against a hung stack; never an assertion about speed.
DEADLINE_S = 90.0


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
        "NO_COLOR": "1",
        "COLUMNS": "250",
        **extra,
    }


def fleetlink(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetlink.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)  # polling interval, not an assertion


@dataclass
class Node:
    agent_id: str
    env: dict[str, str]
    home: Path


def register(server: DevServer, home: Path, tags: dict[str, str]) -> Node:
    with OperatorClient(server.url, server.operator_token) as operator:
        token = operator.create_token(ttl_seconds=600, max_uses=1, tags=tags).token
    env = _env(
        FLEETLINK_URL=server.url,
        FLEETLINK_STATE_DIR=str(home),
        FLEETLINK_MACHINE_ID=f"e2e-relay-{uuid.uuid4().hex}",
        FLEETLINK_REGISTRATION_TOKEN=token,
        FLEETLINK_FIRST_HEARTBEAT_JITTER_S="0",
    )
    registered = fleetlink("agent", "register", env=env)
    assert registered.returncode == 0, registered.stderr
    return Node(registered.stdout.strip(), env, home)


@pytest.fixture(scope="module")
def paris(server: DevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """Agent A (site=paris), running `fleetlink agent run` (heartbeat, tasks and relay sync)."""
    node = register(server, tmp_path_factory.mktemp("paris"), {"site": "paris"})
    daemon = subprocess.Popen(
        [sys.executable, "-m", "fleetlink.cli", "agent", "run"],
        cwd=REPO,
        env=node.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(daemon.stdout or []), daemon=True)
    reader.start()
    yield node
    daemon.send_signal(signal.SIGINT)
    assert daemon.wait(timeout=60) == 0, "".join(lines)
    reader.join(timeout=10)
    assert "Traceback" not in "".join(lines), "".join(lines)


@pytest.fixture(scope="module")
def lyon(server: DevServer, tmp_path_factory: pytest.TempPathFactory) -> Node:
    """Agent B (site=lyon): only queries."""
    return register(server, tmp_path_factory.mktemp("lyon"), {"site": "lyon"})


def query(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    return fleetlink("records", "query", *args, "--json", env=node.env)


def test_agent_a_writes_and_agent_b_reads_it_through_the_relay(
    server: DevServer, paris: Node, lyon: Node
) -> None:
    # Given agent A's daemon running / When a program on A writes a record locally
    put = fleetlink("records", "put", "inventory", "disks/sda", '{"size_gb": 512}', env=paris.env)
    assert put.returncode == 0, put.stderr

    # Then agent B reads it through the relay
    def visible() -> bool:
        answer = query(lyon, "inventory", "--node", paris.agent_id)
        assert answer.returncode == 0, answer.stderr
        return [(r["key"], r["value"]) for r in json.loads(answer.stdout)["records"]] == [
            ("disks/sda", {"size_gb": 512})
        ]

    eventually(visible, "A's record to reach B")
    # And A's sync shows no lag locally, in `fleetlink agents ls` (heartbeat metrics) and in the cloud
    status = fleetlink("agent", "status", "--json", env=paris.env)
    assert json.loads(status.stdout)["relay"]["queue_size"] == 0, status.stdout

    def listed_ok() -> bool:
        listing = fleetlink(
            "agents", "ls", "--url", server.url, env=_env(FLEETLINK_OPERATOR_TOKEN=OPERATOR_TOKEN)
        )
        row = next((line for line in listing.stdout.splitlines() if paris.agent_id in line), "")
        return row.replace("│", " ").split()[-1:] == ["ok"]

    eventually(listed_ok, "agents ls to show A's relay ok")
    sync = httpx.get(
        f"{server.url}/v1/relay/nodes/{paris.agent_id}", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    ).json()
    assert (sync["records"], sync["applied"]) == (1, 1)


def test_an_agent_outside_a_restricted_collections_tag_gets_403(
    server: DevServer, paris: Node, lyon: Node
) -> None:
    # Given a collection open only to agents tagged site=paris, holding a record of A
    policy = {"readers": {"tag": {"site": "paris"}}}
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    assert (
        httpx.put(f"{server.url}/v1/relay/collections/secrets", json=policy, headers=headers).status_code
        == 200
    )
    assert fleetlink("records", "put", "secrets", "k", '"v"', env=paris.env).returncode == 0
    eventually(lambda: bool(json.loads(query(paris, "secrets").stdout)["records"]), "A's secret to sync")
    # When B queries it / Then 403 (exit 1 with the problem), while A reads it
    refused = query(lyon, "secrets")
    assert refused.returncode == 1
    assert "403" in refused.stderr, refused.stderr


@pytest.fixture(scope="module")
def lyon_http(lyon: Node) -> Iterator[httpx.Client]:
    """Raw signed requests as agent B (for bodies the client would never send)."""
    store = IdentityStore(lyon.home)
    identity, key = store.load_identity(), store.load_key()
    assert identity is not None
    assert key is not None
    auth = HttpxSignatureAuth(key, identity.agent_id, identity.key_alg)
    with httpx.Client(base_url=identity.api_url, auth=auth, timeout=60) as client:
        yield client


def rec(key: str = "k", hlc: str | None = None, value: Any = 1, **extra: Any) -> dict[str, Any]:
    hlc = hlc or f"{int(time.time() * 1000):013d}-0000"
    return {
        "record_id": new_id(IdPrefix.RECORD),
        "collection": "hostile",
        "key": key,
        "hlc": hlc,
        "value": value,
    } | extra


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("501 records", lambda: {"records": [rec(f"k{i}") for i in range(501)]}, 422),
        ("malformed hlc", lambda: {"records": [rec(hlc="17645-1")]}, 422),
        ("invalid collection", lambda: {"records": [rec(collection="a/b")]}, 422),
        ("invalid key", lambda: {"records": [rec(key="a\u0000b")]}, 422),
        ("not JSON", lambda: b"{", 400),
        ("over 5 MiB", lambda: {"records": [rec(value="x" * (5 * 1024 * 1024))]}, 413),
    ],
)
def test_hostile_batches_are_4xx_problems(
    lyon_http: httpx.Client, name: str, body: Callable[[], Any], status: int
) -> None:
    # Given a hostile batch / When sent over HTTP / Then a 4xx problem, never a 500
    payload = body()
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    reply = lyon_http.post("/v1/relay/batch", content=raw, headers={"Content-Type": "application/json"})
    assert reply.status_code == status, (name, reply.text)
    assert reply.headers["content-type"] == "application/problem+json"


def test_hostile_records_are_rejected_one_by_one(lyon_http: httpx.Client, paris: Node) -> None:
    # Given a far-future hlc, another node's record and an oversized value next to a good record
    future = f"{int(time.time() * 1000) + 3_600_000:013d}-0000"
    records = [
        rec("good"),
        rec("future", hlc=future),
        rec("theirs", node_id=paris.agent_id),
        rec("big", value="x" * MAX_VALUE_BYTES),
    ]
    # When sent / Then each hostile one is rejected with its reason, the good one applied
    results = lyon_http.post("/v1/relay/batch", json={"records": records}).json()["results"]
    assert [(r["status"], (r["error"] or "").split(":")[0]) for r in results] == [
        ("applied", ""),
        ("rejected", "hlc-ahead"),
        ("rejected", "not-your-record"),
        ("rejected", "value-too-large"),
    ]


def test_a_forged_cursor_is_400(lyon_http: httpx.Client) -> None:
    # Given a cursor not issued by the relay / When a query carries it / Then 400 invalid-cursor
    reply = lyon_http.post("/v1/relay/query", json={"collection": "hostile", "cursor": "eyJzIjowfQ.AAAA"})
    assert reply.status_code == 400
    assert reply.json()["type"].endswith("invalid-cursor")


#: The jitter's seed in the outage test, so that its bound replays the same delays.
OUTAGE_SEED = 18


def test_an_outage_during_5000_writes_costs_few_requests_and_everything_drains(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The stack is paused (SIGSTOP: it keeps its data, as `fleetlink dev` has no persistence across a
    restart yet) while a node writes 5,000 records, then resumed."""
    dev = start_dev_process(OPERATOR_TOKEN)
    try:
        node = register(DevServer(dev.url, OPERATOR_TOKEN), tmp_path_factory.mktemp("outage"), {})
        with (
            RecordStore.in_state_dir(node.home) as store,
            RelayClient.from_state_dir(node.home) as client,  # the node's own timeouts
        ):
            backoff = Backoff(base_s=1.0, max_s=60.0, rand=random.Random(OUTAGE_SEED).random)
            worker = RelayService(store, client, backoff=backoff)
            stop = threading.Event()
            thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
            # Given the stack unreachable
            dev.process.send_signal(signal.SIGSTOP)
            paused_at = time.monotonic()
            thread.start()
            # When the node writes 5,000 records, with the sync worker running
            for n in range(5000):
                store.set("outage", f"k{n:05d}", {"n": n})
            time.sleep(max(0.0, 20 - (time.monotonic() - paused_at)))  # a 20 s outage
            during = worker.requests
            outage_s = time.monotonic() - paused_at
            dev.process.send_signal(signal.SIGCONT)
            # Then everything drains once it is back
            eventually(lambda: not store.has_pending(), "the outbox to drain")
            stop.set()
            worker.wake()
            thread.join(timeout=30)
            drained = worker.requests - during
        sync = httpx.get(
            f"{dev.url}/v1/relay/nodes/{node.agent_id}", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        ).json()
        # The backoff bounds the requests: the n-th goes out no sooner than the sum of the delays before
        # it (1 s doubling to 60 s, full jitter: this seeded run's draws), and the timeouts on top
        replay = Backoff(base_s=1.0, max_s=60.0, rand=random.Random(OUTAGE_SEED).random)
        bound, waited = 1, replay.delay_s(1)
        while waited < outage_s:
            bound += 1
            waited += replay.delay_s(bound)
        print(
            f"\nrelay outage: {outage_s:.0f} s paused, 5000 records written, {during} requests during the "
            f"outage (backoff bound {bound}), {drained} requests to drain, cloud records {sync['records']}"
        )
        assert during <= bound
        assert sync["records"] == 5000
    finally:
        dev.process.send_signal(signal.SIGCONT)
        assert dev.interrupt() == 0, dev.output()
