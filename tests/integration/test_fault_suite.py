"""Every route and every cleanup duty under each kind of DynamoDB fault; the table stays sound.

For each fault kind of ``FaultPlan`` (with a rate and a seed) a fleet is driven through its whole
life: tokens, registrations, heartbeats, agent reads, tag updates, tasks created, listed, claimed,
reported (live output chunks, then results declaring complete output, uploaded by presigned links
and downloaded) and cancelled, attempts read, leases and deliveries expired by the cleanup duties,
an agent's executions listed, a signed release published and downloaded, agents deleted, restored,
purged now, deregistered and purged by the duty, a revocation, the audit log read and the role
probes.
Every answer must be a status the route's OpenAPI document lists (so a fault ends in success or a
documented 409/429/503, never a 500), and afterwards ``check_invariants`` must find nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetlink.api.deps import Deps, build_deps, set_deps
from fleetlink.api.document import openapi_document, route_table
from fleetlink.api.functions import function_spec
from fleetlink.core.clock import FixedClock
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.releases.service import object_key
from fleetlink.local.faults import KINDS, FaultPlan, inject_faults
from fleetlink.local.routing import RouteTable
from fleetlink.release import signing
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
RELEASES_BUCKET = "fleetlink-test-releases"
RELEASE = ("0.2.0", "linux-x86_64")
OUTPUT_BUCKET = "fleetlink-test-output"
OUTPUT_BYTES = gzip.compress(b"ok\n" * 10_000, mtime=0)
OUTPUT_OBJECT = {
    "stream": "stdout",
    "size": len(OUTPUT_BYTES),
    "sha256": hashlib.sha256(OUTPUT_BYTES).hexdigest(),
    "bytes": 30_000,
}
#: Sends of one output chunk until it is taken, as an agent keeps resending while its attempt runs.
CHUNK_SENDS = 6
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


@pytest.fixture
def deps(deps: Deps, clock: FixedClock) -> Iterator[Deps]:
    """The shared deps with a releases and an output bucket (moto S3, never faulted: only DynamoDB
    is) and deleted agents due for the purge duty at once."""
    settings = replace(
        deps.settings,
        releases_bucket=RELEASES_BUCKET,
        output_bucket=OUTPUT_BUCKET,
        deleted_agent_retention_days=0,
    )
    for bucket in (RELEASES_BUCKET, OUTPUT_BUCKET):
        boto3.client("s3", region_name=settings.region).create_bucket(Bucket=bucket)
    built = build_deps(settings, clock=clock)
    set_deps(built)
    yield built
    set_deps(deps)


def drive(driver: Driver, deps: Deps, clock: FixedClock, duties: Counter[str], artifact: Path) -> None:
    """One fleet's life, every route and duty at least once (failures are answers, not exceptions)."""
    api = driver.api
    uses = MACHINES + 4  # and two agents to decommission
    reply = driver.operator("registration", "POST", "/v1/registration-tokens", {"max_uses": uses})
    token = reply.json["token"] if reply.status == 201 else api.mint_token(max_uses=uses)
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
                for seq, stream in ((1, "stdout"), (2, "stderr")):
                    chunk = {
                        "attempt": lease["attempt"],
                        "seq": seq,
                        "parts": [{"stream": stream, "data": "o\n"}],
                    }
                    send_chunk(driver, machine, f"{execution}/output", chunk)
                now = clock.now_ms()
                result = {"attempt": lease["attempt"], "status": "succeeded", "exit_code": 0}
                result |= {"output": "ok\n", "started_at": now, "finished_at": now}
                result |= {"output_objects": [OUTPUT_OBJECT]}
                driver.signed("tasks", machine, "POST", f"{execution}/result", result)
                drive_output_objects(driver, machine, lease)
                driver.operator("tasks", "GET", f"{execution}/output", query="after=0")
                driver.operator("tasks", "GET", f"{execution}/attempts")
                driver.operator("tasks", "GET", f"{execution}/attempts/{lease['attempt']}")
        clock.advance(10 * 60 * 1000)  # past leases (timeout 300 s + grace) and delivery deadlines
        run_duties(deps, duties)
    driver.operator("tasks", "GET", "/v1/tasks", query="limit=5")
    for agent_id in agent_ids[:1]:
        driver.operator("tasks", "GET", f"/v1/agents/{agent_id}/executions", query="limit=2")
    for task_id in task_ids:
        driver.operator("tasks", "GET", f"/v1/tasks/{task_id}")
    for task_id in task_ids[:2]:
        driver.operator("tasks", "POST", f"/v1/tasks/{task_id}/cancel")
    drive_releases(driver, machines, token, artifact)
    drive_decommission(driver, token)
    drive_capabilities(driver, machines, token_reply=reply_token)
    if machines:
        driver.operator("operator", "POST", f"/v1/agents/{machines[-1].agent_id}/revoke")
    for path in ("/v1/health", "/v1/health/ready", "/v1/openapi.json"):
        driver.public("operator", path)
    drive_audit(driver, task_ids)
    clock.advance(60 * 1000)
    run_duties(deps, duties)  # the purge duty: the deregistered agent (and a purge cut short) gone


def drive_output_objects(driver: Driver, machine: Machine, lease: dict[str, Any]) -> None:
    """The reported attempt's complete output: upload links, the object put by its link (straight to
    the bucket, as the agent does), then a download link."""
    execution = f"/v1/executions/{lease['execution_id']}"
    reply = driver.signed(
        "tasks", machine, "POST", f"{execution}/output-uploads", {"attempt": lease["attempt"]}
    )
    if reply.status == 200:
        for upload in reply.json["uploads"]:
            boto3.client("s3").put_object(Bucket=OUTPUT_BUCKET, Key=upload["key"], Body=OUTPUT_BYTES)
    driver.operator("tasks", "GET", f"{execution}/output-objects/stdout", query=f"attempt={lease['attempt']}")


def drive_audit(driver: Driver, task_ids: list[str]) -> None:
    """The audit log, all of it and filtered (by resource and action, by time), and who is calling."""
    driver.operator("operator", "GET", "/v1/audit", query="limit=20")
    if task_ids:
        driver.operator("operator", "GET", "/v1/audit", query=f"resource={task_ids[0]}&action=task.create")
    now = driver.api.clock.now_ms()
    driver.operator("operator", "GET", "/v1/audit", query=f"since={now - 3_600_000}&until={now}")
    for probe in ("/v1/whoami", "/v1/whoami/operator", "/v1/whoami/admin"):
        driver.operator("operator", "GET", probe)


def run_duties(deps: Deps, duties: Counter[str]) -> None:
    for duty in function_spec("cleanup").duties:
        duties[_run_duty(duty.run, deps)] += 1


def send_chunk(driver: Driver, machine: Machine, path: str, chunk: dict[str, Any]) -> None:
    """An output chunk sent until it is taken (a resend is recognised, not a conflict), then once more."""
    for _ in range(CHUNK_SENDS):
        if driver.signed("tasks", machine, "POST", path, chunk).status < 300:
            break
    driver.signed("tasks", machine, "POST", path, chunk)


def drive_releases(driver: Driver, machines: list[Machine], token: str, artifact: Path) -> None:
    """The release key set and read, a signed release announced (twice), uploaded, published, listed and
    downloaded (by a registration token holder and by a signed agent), the install script, and an
    agent reporting the version it runs."""
    key = Ed25519PrivateKey.generate()
    version, platform = RELEASE
    driver.operator(
        "releases", "PUT", "/v1/releases/key", {"public_key": signing.public_pem(key.public_key())}
    )
    driver.operator("releases", "GET", "/v1/releases/key")
    signed = signing.sign_artifact(key, version, platform, artifact)
    manifest = {k: getattr(signed, k) for k in ("version", "platform", "sha256", "size", "signature")}
    for _ in range(2):  # the second is a resend of the same release
        driver.operator("releases", "POST", "/v1/releases", manifest)
    # the upload by the presigned link goes to the bucket, not through the API
    s3 = boto3.client("s3")
    s3.put_object(Bucket=RELEASES_BUCKET, Key=object_key(version, platform), Body=artifact.read_bytes())
    driver.operator("releases", "POST", f"/v1/releases/{version}/{platform}/complete")
    query = f"platform={platform}"
    driver.operator("releases", "GET", "/v1/releases", query=query)
    download = "/v1/agent/releases/latest"
    by_token = {"Authorization": f"Bearer {token}"}
    driver.check("GET", download, driver.api.call("releases", "GET", download, query=query, headers=by_token))
    driver.public("releases", "/v1/agent/install.sh")
    if not machines:
        return
    node = machines[0]
    download = f"/v1/agent/releases/{version}"
    by_agent = driver.api.signed_headers(node, "GET", download, b"", query=query)
    driver.check("GET", download, driver.api.call("releases", "GET", download, query=query, headers=by_agent))
    report = {"event": "upgrade", "version": version, "from_version": "0.1.0"}
    driver.signed("releases", node, "POST", f"/v1/agents/{node.agent_id}/version", report)


def drive_decommission(driver: Driver, token: str) -> None:
    """An agent deleted by an operator, listed, restored, deleted again and purged at once; another
    retiring itself (the purge duty removes it)."""
    deleted, retired = Machine(f"{driver.kind}-deleted"), Machine(f"{driver.kind}-retired")
    for machine in (deleted, retired):
        driver.register(machine, token)
    if deleted.agent_id:
        agent = f"/v1/agents/{deleted.agent_id}"
        driver.operator("operator", "PUT", f"{agent}/tags", {"tags": {"env": "leaving"}})
        driver.operator("operator", "DELETE", agent)
        driver.operator("operator", "GET", "/v1/deleted-agents", query="limit=10")
        driver.operator("operator", "POST", f"{agent}/restore")
        driver.operator("operator", "DELETE", agent)
        driver.operator("operator", "POST", f"{agent}/purge")
    if retired.agent_id:
        driver.signed("operator", retired, "POST", f"/v1/agents/{retired.agent_id}/deregister")


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
    kind: str, api: Api, deps: Deps, clock: FixedClock, tmp_path: Path
) -> None:
    # Given a fresh table and faults of one kind at its rate, from a fixed seed
    driver = Driver(api, kind)
    duties: Counter[str] = Counter()
    extra = f",{TIMEOUT_WRITES}" if kind == "timeout" else ""
    with inject_faults(FaultPlan.parse(f"{kind}={RATES[kind]},seed={SEED}{extra}")) as injector:
        # When a fleet lives its life through every route and duty
        artifact = tmp_path / "agent.tar.gz"
        artifact.write_bytes(b"signed agent bytes" * 64)
        drive(driver, deps, clock, duties, artifact)
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
