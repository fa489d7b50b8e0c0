"""Complete output in the output bucket through the real handlers on moto (DynamoDB and S3): a
result declares its objects, the agent gets presigned PUTs for that execution's attempt only, an
operator a presigned GET once the object is there; hostile calls get their documented problems."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from fleetlink.api.deps import Deps, build_deps, set_deps
from fleetlink.core.clock import FixedClock
from fleetlink.core.tasks.output_objects import UPLOAD_WINDOW_MS
from fleetlink.store.keys import output_object_key
from tests.integration.test_tasks import claim, create, report
from tests.support import Api, Machine, Reply

BUCKET = "fleetlink-test-output"
STDOUT = gzip.compress(b"x" * 100_000 + b"\nLAST\n", mtime=0)
DECLARED = {
    "stream": "stdout",
    "size": len(STDOUT),
    "sha256": hashlib.sha256(STDOUT).hexdigest(),
    "bytes": 100_006,
}


@pytest.fixture
def api(deps: Deps, clock: FixedClock) -> Iterator[Api]:
    """The handlers with an output bucket (moto S3); the shared deps again afterwards."""
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    set_deps(build_deps(dataclasses.replace(deps.settings, output_bucket=BUCKET), clock=clock))
    yield Api(clock)
    set_deps(deps)


@pytest.fixture
def agents(api: Api) -> list[Machine]:
    token = api.mint_token(tags={"role": "objects"})
    machines = [Machine(f"objects-{i}") for i in range(2)]
    for machine in machines:
        assert api.register(machine, token).status == 201
    return machines


def leased(api: Api, agent: Machine, **fields: Any) -> dict[str, Any]:
    create(api, {"agent_ids": [agent.agent_id]}, **fields)
    (lease,) = claim(api, agent)["executions"]
    return lease


def uploads(api: Api, agent: Machine, execution_id: str, body: Any, **sign: Any) -> Reply:
    path = f"/v1/executions/{execution_id}/output-uploads"
    return api.signed("tasks", agent, "POST", path, body, **sign)


def download(api: Api, execution_id: str, stream: str = "stdout", query: str = "") -> Reply:
    path = f"/v1/executions/{execution_id}/output-objects/{stream}"
    return api.operator("tasks", "GET", path, query=query, role="viewer")


def problem(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    assert reply.json["type"] == f"urn:fleetlink:problem:{code}", reply.json


def test_a_declared_object_is_uploaded_by_link_and_downloaded_after(api: Api, agents: list[Machine]) -> None:
    agent = agents[0]
    lease = leased(api, agent)
    exe = lease["execution_id"]
    # Given a result that declares its complete stdout
    assert report(api, agent, lease, output_truncated=True, output_objects=[DECLARED]).status == 200
    # When the agent asks for upload links
    reply = uploads(api, agent, exe, {"attempt": 1})
    # Then it gets one presigned PUT, of exactly that size, to that execution's attempt's key only
    assert reply.status == 200, reply.body
    (upload,) = reply.json["uploads"]
    key = output_object_key(exe, 1, "stdout")
    assert upload["key"] == key
    assert upload["headers"]["Content-Length"] == str(len(STDOUT))
    assert f"/{key}" in upload["url"]
    assert "X-Amz-Signature=" in upload["url"]
    # And before the object is there, an operator is told it is not uploaded yet
    problem(download(api, exe), 404, "output-not-uploaded")
    # When it is there (the agent's PUT)
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=BUCKET, Key=key, Body=STDOUT)
    # Then an operator (viewer) gets a GET link with the recorded size and SHA-256
    got = download(api, exe)
    assert got.status == 200, got.body
    assert (got.json["key"], got.json["size"], got.json["sha256"]) == (key, len(STDOUT), DECLARED["sha256"])
    assert got.json["bytes"] == DECLARED["bytes"]
    assert f"/{key}" in got.json["url"]
    # and the attempt records the object
    attempt = api.operator("tasks", "GET", f"/v1/executions/{exe}/attempts/1").json
    assert attempt["output_objects"] == [DECLARED]
    # And asking again (an agent retrying after a failed PUT) answers fresh links to the same key
    again = uploads(api, agent, exe, {"attempt": 1})
    assert again.status == 200
    assert again.json["uploads"][0]["key"] == key


def test_hostile_upload_requests_get_their_documented_problems(
    api: Api, clock: FixedClock, agents: list[Machine]
) -> None:
    agent, other = agents
    lease = leased(api, agent)
    exe = lease["execution_id"]
    # Before the result: the attempt is running, not reported
    problem(uploads(api, agent, exe, {"attempt": 1}), 409, "attempt-not-reported")
    assert report(api, agent, lease, output_truncated=True, output_objects=[DECLARED]).status == 200
    # Another agent's execution
    problem(uploads(api, other, exe, {"attempt": 1}), 403, "not-your-resource")
    # An unknown execution, an attempt that never ran
    problem(uploads(api, agent, "exe_01KDXRYP0000000000000000ZZ", {"attempt": 1}), 404, "execution-not-found")
    problem(uploads(api, agent, exe, {"attempt": 7}), 404, "attempt-not-found")
    # Malformed bodies
    for body in ({"attempt": "1"}, {"attempt": 0}, {"attempt": 1, "key": "outputs/x"}, {}):
        reply = uploads(api, agent, exe, body)
        assert reply.status in (400, 422), (body, reply.body)
        assert reply.headers["Content-Type"].startswith("application/problem+json")
    # A replayed request (same signature nonce)
    assert uploads(api, agent, exe, {"attempt": 1}, nonce="replayed-nonce-0001").status == 200
    problem(uploads(api, agent, exe, {"attempt": 1}, nonce="replayed-nonce-0001"), 401, "unauthenticated")
    # A finished attempt long ago: its window closed
    clock.advance(UPLOAD_WINDOW_MS + 60_000)
    problem(uploads(api, agent, exe, {"attempt": 1}), 409, "upload-window-closed")


def test_a_result_without_objects_has_none_to_upload_or_download(api: Api, agents: list[Machine]) -> None:
    agent = agents[0]
    lease = leased(api, agent)
    exe = lease["execution_id"]
    assert report(api, agent, lease).status == 200
    problem(uploads(api, agent, exe, {"attempt": 1}), 409, "no-output-objects")
    problem(download(api, exe), 404, "output-object-not-found")
    problem(download(api, exe, "stderr"), 404, "output-object-not-found")
    problem(download(api, "exe_01KDXRYP0000000000000000ZZ"), 404, "execution-not-found")
    problem(download(api, exe, query="attempt=3"), 404, "attempt-not-found")
    bad_stream = download(api, exe, "secrets")
    assert bad_stream.status in (400, 422), bad_stream.body


def test_a_result_declaring_bad_objects_is_refused(api: Api, agents: list[Machine]) -> None:
    agent = agents[0]
    lease = leased(api, agent)
    for objects in (
        [DECLARED, DECLARED],  # one stream twice
        [DECLARED | {"sha256": "not-hex"}],
        [DECLARED | {"size": 0}],
        [DECLARED | {"stream": "both"}],
        [DECLARED | {"key": "outputs/another"}],
        [DECLARED, DECLARED | {"stream": "stderr"}, DECLARED],
    ):
        reply = report(api, agent, lease, output_objects=objects)
        assert reply.status in (400, 422), (objects, reply.body)
    # Then the attempt still takes its real result
    assert report(api, agent, lease, output_objects=[DECLARED]).status == 200


def test_each_attempt_of_a_retried_execution_keeps_its_own_objects(api: Api, agents: list[Machine]) -> None:
    agent = agents[0]
    first = leased(api, agent, max_retries=1)
    exe = first["execution_id"]
    assert report(api, agent, first, status="failed", exit_code=1, output_objects=[DECLARED]).status == 200
    (second,) = claim(api, agent)["executions"]
    stderr = DECLARED | {"stream": "stderr"}
    assert report(api, agent, second, output_objects=[stderr]).status == 200
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=BUCKET, Key=output_object_key(exe, 1, "stdout"), Body=STDOUT)
    s3.put_object(Bucket=BUCKET, Key=output_object_key(exe, 2, "stderr"), Body=STDOUT)
    # The first attempt's stdout and the second's stderr, each under its own attempt's key
    assert download(api, exe, query="attempt=1").json["key"] == output_object_key(exe, 1, "stdout")
    assert download(api, exe, "stderr").json["attempt"] == 2  # the default: the last that ended
    problem(download(api, exe, "stdout"), 404, "output-object-not-found")
    assert uploads(api, agent, exe, {"attempt": 1}).json["uploads"][0]["stream"] == "stdout"
    assert uploads(api, agent, exe, {"attempt": 2}).json["uploads"][0]["stream"] == "stderr"
