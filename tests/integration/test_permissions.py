"""Each function calls exactly the DynamoDB actions fleetlink.api.permissions declares for it.

The declaration is what the CDK app grants (tests/infra checks the policies against it). Here the
real handlers run every sample request in events/ and the main flows (register, re-register,
heartbeat, list, read, tags, revoke, readiness, every cleanup duty) on moto, while a botocore hook
on the shared DynamoDB client records each call as (IAM action, table or index). A call that is not
declared would be denied in AWS; a declared action no flow makes is a grant nobody needs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetlink.api.app import lambda_entry
from fleetlink.api.deps import build_deps, set_deps
from fleetlink.api.functions import FUNCTIONS as REGISTRY
from fleetlink.api.functions import function_spec
from fleetlink.api.permissions import calls_of_request
from fleetlink.api.settings import OperatorAuth, Settings
from fleetlink.core.clock import FixedClock
from fleetlink.core.releases.service import object_key
from fleetlink.core.tasks import service as task_service
from fleetlink.local.events import LocalLambdaContext
from fleetlink.local.moto_backend import local_dynamodb
from fleetlink.release import signing
from fleetlink.store.base import table_client
from fleetlink.store.tasks import fanout as task_store
from tests.support import NOW_MS, OPERATOR_TOKEN, Api, Machine, Reply

ROOT = Path(__file__).parents[2]
SAMPLES = sorted((ROOT / "events" / "http").glob("*.json"))
SCHEDULED_SAMPLES = sorted((ROOT / "events" / "scheduled").glob("*.json"))
SAMPLED_AT_MS = 1_767_225_600_000
FUNCTIONS = tuple(REGISTRY)
OUTSIDE = "<no handler>"
OUTPUT_BUCKET = "fleetlink-perm-output"

Calls = dict[str, set[tuple[str, str]]]


class CallRecorder:
    """Records every DynamoDB request on the models' shared client under the function running."""

    def __init__(self) -> None:
        self.function = OUTSIDE
        self.calls: Calls = defaultdict(set)

    def attach(self) -> None:
        """Hook the client the models share (``bind_table`` made it); call after ``build_deps``."""
        client = table_client()
        client.meta.events.register("before-parameter-build.dynamodb", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls[self.function] |= calls_of_request(model.name, params)

    @contextmanager
    def running(self, function: str) -> Iterator[None]:
        self.function = function
        try:
            yield
        finally:
            self.function = OUTSIDE


class RecordedApi(Api):
    """The test Api, with each handler call recorded under its function."""

    def __init__(self, clock: FixedClock, recorder: CallRecorder) -> None:
        super().__init__(clock)
        self.recorder = recorder

    def call(self, function: str, method: str, path: str, **kwargs: Any) -> Reply:
        with self.recorder.running(function):
            return super().call(function, method, path, **kwargs)


@contextmanager
def deployed_like(
    table: str, recorder: CallRecorder, settings: Settings, clock: FixedClock
) -> Iterator[None]:
    """A moto table, the handlers' deps bound to it, the recorder on their client."""
    with local_dynamodb(table):
        set_deps(build_deps(settings, clock=clock))
        recorder.attach()
        try:
            yield
        finally:
            set_deps(None)


def run_samples(recorder: CallRecorder) -> None:
    """Every HTTP sample as API Gateway delivers it, operators authorized by IAM (as in AWS)."""
    settings = Settings(
        table_name="fleetlink-perm-samples", region="us-east-1", operator_auth=OperatorAuth.IAM
    )
    with deployed_like(settings.table_name, recorder, settings, FixedClock(SAMPLED_AT_MS)):
        for sample in SAMPLES:
            function = sample.name.split(".")[0]
            with recorder.running(function):
                context = cast(LambdaContext, LocalLambdaContext(function))
                response = lambda_entry(function)(json.loads(sample.read_text()), context)
            assert response["statusCode"] < 500, (sample.name, response.get("body"))
        cleanup = _cleanup_handler()
        for sample in SCHEDULED_SAMPLES:
            with recorder.running("cleanup"):
                cleanup(json.loads(sample.read_text()), LocalLambdaContext("cleanup"))


def run_flows(recorder: CallRecorder) -> None:
    """Register, re-register, heartbeat, tasks from creation to every end, list, read, tags, revoke,
    readiness, every cleanup duty with work to do: the main flows."""
    settings = Settings(
        table_name="fleetlink-perm-flows",
        region="us-east-1",
        operator_auth=OperatorAuth.TOKEN,
        operator_token_sha256=hashlib.sha256(OPERATOR_TOKEN.encode()).hexdigest(),
        releases_bucket="fleetlink-perm-releases",
        output_bucket=OUTPUT_BUCKET,
        deleted_agent_retention_days=0,  # a deleted agent is due for the purge duty at once
    )
    clock = FixedClock(NOW_MS)
    with deployed_like(settings.table_name, recorder, settings, clock):
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=OUTPUT_BUCKET)
        api = RecordedApi(clock, recorder)
        token = api.mint_token(max_uses=8, tags={"role": "web"})
        machine, other = Machine("perm-1"), Machine("perm-2")
        for agent in (machine, other):
            assert api.register(agent, token).status == 201
        assert api.register(machine, None).status == 201  # re-registration: same key and hardware
        assert api.heartbeat(machine).status == 200
        run_release_flows(api, machine, token, settings)
        run_decommission_flows(api, token)
        run_task_flows(api, machine, other)
        run_tunnel_flows(api, machine)
        run_relay_flows(api, machine)
        assert api.operator("operator", "GET", "/v1/agents").status == 200
        assert api.operator("operator", "GET", "/v1/agents", query="tag=role:web").status == 200
        assert api.operator("operator", "GET", f"/v1/agents/{machine.agent_id}").status == 200
        tags = {"tags": {"zone": "a"}}  # role=web removed: a tag member is deleted
        assert api.operator("operator", "PUT", f"/v1/agents/{machine.agent_id}/tags", tags).status == 200
        assert api.operator("operator", "POST", f"/v1/agents/{other.agent_id}/revoke").status == 200
        assert api.register(other, None).status == 403  # a revoked agent re-registering: refused
        run_identity_flows(api, machine, token)
        assert api.call("operator", "GET", "/v1/health/ready").status == 200


def run_release_flows(api: RecordedApi, machine: Machine, token: str, settings: Settings) -> None:
    """The release key set, a release announced, uploaded, published, listed and downloaded (by a
    signed agent and by a registration token holder), the install script."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=settings.releases_bucket)
    key = Ed25519PrivateKey.generate()
    body = {"public_key": signing.public_pem(key.public_key())}
    assert api.operator("releases", "PUT", "/v1/releases/key", body).status == 200
    artifact = Path(tempfile.mkdtemp()) / "agent.tar.gz"
    artifact.write_bytes(b"artifact")
    signed = signing.sign_artifact(key, "0.2.0", "linux-x86_64", artifact)
    manifest = {k: getattr(signed, k) for k in ("version", "platform", "sha256", "size", "signature")}
    assert api.operator("releases", "POST", "/v1/releases", manifest).status == 201
    s3.put_object(
        Bucket=settings.releases_bucket, Key=object_key("0.2.0", "linux-x86_64"), Body=artifact.read_bytes()
    )
    assert api.operator("releases", "POST", "/v1/releases/0.2.0/linux-x86_64/complete").status == 200
    assert api.operator("releases", "GET", "/v1/releases").status == 200
    query = "platform=linux-x86_64"
    path = "/v1/agent/releases/latest"
    signed_headers = api.signed_headers(machine, "GET", path, b"", query=query)
    assert api.call("releases", "GET", path, query=query, headers=signed_headers).status == 200
    headers = {"Authorization": f"Bearer {token}"}
    assert api.call("releases", "GET", path, query=query, headers=headers).status == 200
    assert api.call("releases", "GET", "/v1/agent/install.sh").status == 200
    report = {"event": "upgrade", "version": "0.2.0", "from_version": "0.1.0"}
    assert (
        api.signed("releases", machine, "POST", f"/v1/agents/{machine.agent_id}/version", report).status
        == 200
    )


def run_decommission_flows(api: RecordedApi, token: str) -> None:
    """Agents deleted by an operator (listed, restored, purged now) and by themselves (the purge duty's)."""
    first, second = Machine("perm-3"), Machine("perm-4")
    for agent in (first, second):
        assert api.register(agent, token).status == 201
    assert api.operator("operator", "DELETE", f"/v1/agents/{first.agent_id}").status == 200
    assert api.operator("operator", "GET", "/v1/deleted-agents").status == 200
    assert api.operator("operator", "POST", f"/v1/agents/{first.agent_id}/restore").status == 200
    assert api.operator("operator", "DELETE", f"/v1/agents/{first.agent_id}").status == 200
    assert api.operator("operator", "POST", f"/v1/agents/{first.agent_id}/purge").status == 200
    assert api.signed("operator", second, "POST", f"/v1/agents/{second.agent_id}/deregister").status == 200


def run_identity_flows(api: Api, machine: Machine, token: str) -> None:
    """Tokens listed and revoked, a look-alike registering (evidence read), rotation, recovery."""
    assert api.operator("registration", "GET", "/v1/registration-tokens").status == 200
    assert api.register(Machine("perm-1"), token).status == 201  # resembles machine: its profile read
    rotated = Machine("perm-1")
    assert api.rotate_key(machine, rotated).status == 200
    machine.key = rotated.key
    recovery = api.recovery_token(machine.agent_id or "")
    assert recovery.status == 201
    assert api.register(Machine("perm-1"), recovery.json["token"]).status == 201
    token_id = token.split(".")[0]
    assert api.operator("registration", "DELETE", f"/v1/registration-tokens/{token_id}").status == 200


def run_relay_flows(api: RecordedApi, machine: Machine) -> None:
    """A batch, a resend (failed conditions), queries by node, across the fleet and by time, a policy."""
    hlc = f"{NOW_MS:013d}-0000"
    record = {"record_id": "rec_01KDXRYP0000000000000000GH", "collection": "c", "key": "k", "hlc": hlc}
    batch = {"records": [record | {"value": 1}]}
    for _ in range(2):
        assert api.signed("relay", machine, "POST", "/v1/relay/batch", batch).status == 200
    for body in ({"node_id": machine.agent_id}, {}, {"updated_since": 0}):
        query = {"collection": "c"} | body
        assert api.signed("relay", machine, "POST", "/v1/relay/query", query).status == 200
    policy = {"readers": {"tag": {"role": "web"}}}
    assert api.operator("relay", "PUT", "/v1/relay/collections/c", policy).status == 200
    assert api.operator("relay", "GET", f"/v1/relay/nodes/{machine.agent_id}").status == 200


#: A complete stdout declared in a result (its bytes are put by presigned link, straight to S3).
OUTPUT_BYTES = b"complete output, gzip or not: S3 does not look"
OUTPUT_OBJECT = {
    "stream": "stdout",
    "size": len(OUTPUT_BYTES),
    "sha256": hashlib.sha256(OUTPUT_BYTES).hexdigest(),
    "bytes": 1_000_000,
}


def run_output_object_flows(api: RecordedApi, machine: Machine, lease: dict[str, Any]) -> None:
    """Upload links for a reported attempt's declared object, the object put, a download link."""
    execution = f"/v1/executions/{lease['execution_id']}"
    body = {"attempt": lease["attempt"]}
    reply = api.signed("tasks", machine, "POST", f"{execution}/output-uploads", body)
    assert reply.status == 200, reply.body
    (upload,) = reply.json["uploads"]
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=OUTPUT_BUCKET, Key=upload["key"], Body=OUTPUT_BYTES
    )
    assert api.operator("tasks", "GET", f"{execution}/output-objects/stdout").status == 200


def run_task_flows(api: RecordedApi, machine: Machine, other: Machine) -> None:
    """A task succeeding after a retry, one cancelled while queued, one cancelled while running, one
    timing out (lease expiry), one nobody claims (delivery expiry); reads and lists of each."""

    def create(targets: dict[str, Any], **fields: Any) -> str:
        body = {"type": "shell", "command": "echo hi", "targets": targets, **fields}
        reply = api.operator("tasks", "POST", "/v1/tasks", body)
        assert reply.status == 201, reply.body
        return str(reply.json["task_id"])

    def claim(agent: Machine, running: list[str] | None = None) -> list[dict[str, Any]]:
        path = f"/v1/agents/{agent.agent_id}/executions/claim"
        reply = api.signed("tasks", agent, "POST", path, {"max": 5, "running_executions": running or []})
        assert reply.status == 200, reply.body
        leases: list[dict[str, Any]] = reply.json["executions"]
        return leases

    def report(agent: Machine, lease: dict[str, Any], status: str, **fields: Any) -> None:
        now = api.clock.now_ms()
        times = {"started_at": now, "finished_at": now}
        body = {"attempt": lease["attempt"], "status": status, "exit_code": 0, **times, **fields}
        path = f"/v1/executions/{lease['execution_id']}/result"
        assert api.signed("tasks", agent, "POST", path, body).status == 200

    retried = create({"agent_ids": [machine.agent_id]}, max_retries=1, timeout_seconds=600)
    (first,) = claim(machine)
    report(machine, first, "failed")  # requeued as attempt 2
    (second,) = claim(machine)
    assert api.heartbeat(machine, {"running_executions": [second["execution_id"]]}).status == 200
    report(machine, second, "succeeded", output_objects=[OUTPUT_OBJECT])
    assert api.signed("tasks", machine, "GET", f"/v1/executions/{second['execution_id']}").status == 200
    run_output_object_flows(api, machine, second)
    assert api.operator("tasks", "GET", f"/v1/tasks/{retried}").status == 200

    queued = create({"tags": {"role": "web"}})
    assert api.operator("tasks", "POST", f"/v1/tasks/{queued}/cancel").status == 200
    running = create({"agent_ids": [machine.agent_id]})
    (lease,) = claim(machine)
    assert api.operator("tasks", "POST", f"/v1/tasks/{running}/cancel").status == 200
    assert api.heartbeat(machine, {"running_executions": [lease["execution_id"]]}).status == 200
    report(machine, lease, "failed")
    assert api.operator("tasks", "GET", "/v1/tasks").status == 200
    assert api.operator("tasks", "GET", "/v1/tasks", query="state=cancelled").status == 200
    assert api.operator("tasks", "GET", f"/v1/agents/{machine.agent_id}/executions").status == 200

    create({"agent_ids": [machine.agent_id]}, timeout_seconds=10)
    claim(machine)
    create({"agent_ids": [other.agent_id]}, delivery_timeout_seconds=60)
    with chunked_fan_outs(budget_s=60.0):  # written in chunks by the create itself
        create({"tags": {"role": "web"}})
    with chunked_fan_outs(budget_s=0.0):  # none written by the create: the fan-out duty's work
        create({"tags": {"role": "web"}})
    api.clock.advance(121_000)  # past the lease and the delivery deadline
    cleanup = _cleanup_handler()
    with api.recorder.running("cleanup"):
        handled = cleanup({"detail": {"duty": None}}, LocalLambdaContext("cleanup"))["handled"]
    assert all(handled.values()), handled  # every duty had something to do


@contextmanager
def chunked_fan_outs(budget_s: float) -> Iterator[None]:
    """Creates treat every fan-out as large (chunks of one) and write for at most ``budget_s``."""
    chunk, budget = task_store.FANOUT_CHUNK, task_service.CREATE_FANOUT_BUDGET_S
    task_store.FANOUT_CHUNK, task_service.CREATE_FANOUT_BUDGET_S = 1, budget_s
    try:
        yield
    finally:
        task_store.FANOUT_CHUNK, task_service.CREATE_FANOUT_BUDGET_S = chunk, budget


def run_tunnel_flows(api: RecordedApi, machine: Machine) -> None:
    """A tunnel created, fetched, reported on, its events posted and read, listed, summarised,
    patched and deleted."""
    body = {"provider": "self_hosted", "name": "web", "local_target": "127.0.0.1:8080"}
    reply = api.operator("tunnels", "POST", f"/v1/agents/{machine.agent_id}/tunnels", body)
    assert reply.status == 201, reply.body
    tunnel = f"/v1/tunnels/{reply.json['tunnel_id']}"
    assert api.signed("tunnels", machine, "GET", f"/v1/agents/{machine.agent_id}/tunnels").status == 200
    assert api.signed("tunnels", machine, "PUT", f"{tunnel}/status", {"health": "up"}).status == 200
    event = {"level": "error", "event_type": "error", "message": "x", "created_at": api.clock.now_ms()}
    assert api.signed("tunnels", machine, "POST", f"{tunnel}/events", {"events": [event]}).status == 200
    for path, query in (
        (f"{tunnel}/events", ""),
        ("/v1/tunnels", ""),
        ("/v1/tunnels/health", ""),
        ("/v1/tunnels/events", ""),
        ("/v1/tunnels/events", "errors=true"),
    ):
        assert api.operator("tunnels", "GET", path, query=query).status == 200
    assert api.operator("tunnels", "PATCH", tunnel, {"enabled": False}).status == 200
    assert api.operator("tunnels", "DELETE", tunnel).status == 204


def _cleanup_handler() -> Any:
    spec = importlib.util.spec_from_file_location("cleanup_handler", ROOT / "functions/cleanup/handler.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


@pytest.fixture(scope="module")
def observed() -> Calls:
    """What each function called, over every sample and flow."""
    recorder = CallRecorder()
    run_samples(recorder)
    run_flows(recorder)
    return recorder.calls


def test_every_registered_function_has_a_handler() -> None:
    # Given the functions the registry declares
    # When their code directories are looked up
    missing = [name for name in FUNCTIONS if not (ROOT / "functions" / name / "handler.py").is_file()]
    # Then each has its Lambda entry
    assert not missing


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_calls_nothing_undeclared(observed: Calls, function: str) -> None:
    # Given every call the function's code made over the samples and flows
    made = observed.get(function, set())
    # When compared with what the declaration grants
    undeclared = made - function_spec(function).access.calls()
    # Then nothing would be denied in AWS
    assert not undeclared, f"{function} calls undeclared (action, scope) pairs: {sorted(undeclared)}"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_declared_action_is_called(observed: Calls, function: str) -> None:
    # Given what the declaration grants the function
    declared = function_spec(function).access.calls()
    # When compared with the calls its code made
    unused = declared - observed.get(function, set())
    # Then every grant is needed (extend the flows above when a new call is declared)
    assert not unused, (
        f"{function} is granted (action, scope) pairs no sample or flow makes: {sorted(unused)}"
    )


def test_no_call_is_made_outside_a_handler(observed: Calls) -> None:
    # Given the recording (the table was created by moto's own client, not the models' one)
    # Then every DynamoDB call the models made is attributed to a function
    assert not observed.get(OUTSIDE)


def test_transactions_need_their_item_actions() -> None:
    # Given a transaction writing, updating, deleting and checking items
    items: list[dict[str, Any]] = [{"Put": {}}, {"Update": {}}, {"Delete": {}}, {"ConditionCheck": {}}]
    params: dict[str, Any] = {"TransactItems": items}
    # When the IAM actions it needs are derived
    needed = calls_of_request("TransactWriteItems", params)
    # Then they are the single-item actions (there is no TransactWriteItems IAM action)
    assert {action for action, _ in needed} == {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
    }


def test_an_index_query_needs_the_index() -> None:
    assert calls_of_request("Query", {"IndexName": "gsi1"}) == {("dynamodb:Query", "index/gsi1")}
    assert calls_of_request("Query", {}) == {("dynamodb:Query", "table")}
