"""The agent's API client over httpx.MockTransport (no network): retries, problems, exact signed bytes."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fleetlink.agent.hardware import fingerprint
from fleetlink.auth.keys import generate_private_key, load_public_key, public_key_pem
from fleetlink.auth.signatures import IncomingRequest, read_signature_params, verify_request
from fleetlink.client.agent import FleetlinkClient
from fleetlink.client.http import (
    FleetlinkApiError,
    FleetlinkClientError,
    FleetlinkConnectionError,
    api_root,
    encode_json,
    retry_after_s,
)
from fleetlink.client.operator import OperatorClient
from fleetlink.core.entities import Hardware, KeyAlg

BASE = "https://api.fleetlink.test"
AGENT_ID = "agt_01JABCDEFGHJKMNPQRSTVWXYZ0"
KEY = generate_private_key(KeyAlg.ED25519)
HARDWARE = Hardware(machine_id="machine-1", hostname="edge-1", arch="x86_64", cpu_model="Xeon")
ACK = {
    "server_time": 1,
    "heartbeat_interval_s": 60,
    "pending_executions": 2,
    "tunnels_version": 0,
    "renewed": [],
}
REGISTERED = {
    "agent_id": AGENT_ID,
    "event": "register",
    "similarity_score": None,
    "heartbeat_interval_s": 60,
    "server_time": 1,
}

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport that answers from a list of responses and remembers requests and sleeps."""

    def __init__(self, *responses: httpx.Response | Handler) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
            return answer(request) if callable(answer) else answer

        return httpx.MockTransport(handle)

    def agent(self, **options: Any) -> FleetlinkClient:
        return FleetlinkClient(
            BASE,
            private_key=KEY,
            key_alg=KeyAlg.ED25519,
            transport=self.transport(),
            sleep=self.sleeps.append,
            **options,
        )

    def operator(self, **options: Any) -> OperatorClient:
        return OperatorClient(
            BASE, "op-token", transport=self.transport(), sleep=self.sleeps.append, **options
        )


def problem(status: int, code: str, detail: str, **headers: str) -> httpx.Response:
    body = {
        "type": f"urn:fleetlink:problem:{code}",
        "title": "Some title",
        "status": status,
        "detail": detail,
    }
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json", **headers})


def verify(request: httpx.Request, key_id: str) -> None:
    """The server's check of the request exactly as sent."""
    incoming = IncomingRequest(
        method=request.method,
        target_uri=str(request.url),
        headers=dict(request.headers),
        body=request.content,
    )
    assert read_signature_params(incoming).key_id == key_id
    public = load_public_key(public_key_pem(KEY), KeyAlg.ED25519)
    verify_request(incoming, public, KeyAlg.ED25519, now_s=int(time.time()))


# --- retries -------------------------------------------------------------------------------------


def test_429_is_retried_after_the_servers_retry_after() -> None:
    # Given a server that throttles once with Retry-After: 3
    recorder = Recorder(
        problem(429, "throttled", "slow down", **{"Retry-After": "3"}), httpx.Response(200, json=ACK)
    )
    # When the agent heartbeats
    ack = recorder.agent().heartbeat(AGENT_ID)
    # Then it waited 3 s, sent again, and got the answer
    assert recorder.sleeps == [3.0]
    assert len(recorder.requests) == 2
    assert ack.pending_executions == 2


def test_each_retry_is_signed_afresh_with_a_new_nonce() -> None:
    recorder = Recorder(
        problem(503, "unavailable", "busy", **{"Retry-After": "1"}), httpx.Response(200, json=ACK)
    )
    recorder.agent().heartbeat(AGENT_ID)
    nonces = {read_signature_params(_incoming(r)).nonce for r in recorder.requests}
    assert len(nonces) == 2


def test_retries_are_bounded_and_then_the_problem_is_raised() -> None:
    # Given a server that is always unavailable
    recorder = Recorder(problem(503, "unavailable", "the table is throttled", **{"Retry-After": "2"}))
    # When the agent heartbeats with 3 attempts allowed / Then it gives up after 3 with the 503 problem
    with pytest.raises(FleetlinkApiError) as raised:
        recorder.agent(max_attempts=3).heartbeat(AGENT_ID)
    assert raised.value.status == 503
    assert len(recorder.requests) == 3
    assert recorder.sleeps == [2.0, 2.0]


def test_a_long_retry_after_is_capped() -> None:
    recorder = Recorder(
        problem(429, "throttled", "later", **{"Retry-After": "3600"}), httpx.Response(200, json=ACK)
    )
    recorder.agent(max_wait_s=5.0).heartbeat(AGENT_ID)
    assert recorder.sleeps == [5.0]


def test_without_retry_after_the_wait_backs_off_exponentially() -> None:
    recorder = Recorder(problem(503, "unavailable", "busy"))
    with pytest.raises(FleetlinkApiError):
        recorder.agent(max_attempts=4, backoff_s=1.0).heartbeat(AGENT_ID)
    # Then each wait is within its full-jitter bound: [0, 1] x 1, 2, 4 seconds
    bounds = (1.0, 2.0, 4.0)
    assert [0.0 <= wait <= bound for wait, bound in zip(recorder.sleeps, bounds, strict=True)] == [True] * 3


def test_other_errors_are_not_retried() -> None:
    recorder = Recorder(problem(500, "internal", "an internal error occurred"))
    with pytest.raises(FleetlinkApiError):
        recorder.agent().heartbeat(AGENT_ID)
    assert len(recorder.requests) == 1


def test_a_refused_connection_is_retried_then_reported() -> None:
    # Given a server nobody can connect to
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    recorder = Recorder(refuse)
    # When the agent heartbeats / Then it tried max_attempts times and says it cannot reach the API
    with pytest.raises(FleetlinkConnectionError, match="cannot reach"):
        recorder.agent(max_attempts=2).heartbeat(AGENT_ID)
    assert len(recorder.requests) == 2


def test_retry_after_as_an_http_date() -> None:
    response = httpx.Response(429, headers={"Retry-After": email.utils.formatdate(1_000_030, usegmt=True)})
    assert retry_after_s(response, now=1_000_000) == 30.0


# --- problems ------------------------------------------------------------------------------------


def test_a_problem_document_becomes_an_api_error() -> None:
    # Given a server that answers 403 with an RFC 9457 problem
    recorder = Recorder(problem(403, "agent-revoked", "this agent is revoked"))
    # When the agent heartbeats / Then the error carries status, title, detail and code
    with pytest.raises(FleetlinkApiError) as raised:
        recorder.agent().heartbeat(AGENT_ID)
    error = raised.value
    assert (error.status, error.title, error.detail, error.code) == (
        403,
        "Some title",
        "this agent is revoked",
        "agent-revoked",
    )
    assert str(error) == "403 Some title: this agent is revoked"


def test_validation_problems_keep_their_field_errors() -> None:
    body = {
        "type": "urn:fleetlink:problem:validation-failed",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "the request does not match the schema",
        "errors": [{"loc": ["body", "ttl_seconds"], "type": "greater_than_equal", "msg": "too small"}],
    }
    recorder = Recorder(httpx.Response(422, json=body))
    with pytest.raises(FleetlinkApiError) as raised:
        recorder.operator().create_token(ttl_seconds=1)
    assert raised.value.errors == body["errors"]


def test_a_non_json_error_still_gives_a_problem() -> None:
    recorder = Recorder(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(FleetlinkApiError) as raised:
        recorder.agent().heartbeat(AGENT_ID)
    assert raised.value.problem == {
        "title": "Bad Gateway",
        "status": 502,
        "detail": "<html>Bad Gateway</html>",
    }


def test_an_answer_of_the_wrong_shape_is_a_client_error_not_a_crash() -> None:
    recorder = Recorder(httpx.Response(200, json={"unexpected": True}))
    with pytest.raises(FleetlinkClientError, match="HeartbeatAck"):
        recorder.agent().heartbeat(AGENT_ID)


# --- signed bytes --------------------------------------------------------------------------------


def _incoming(request: httpx.Request) -> IncomingRequest:
    return IncomingRequest(request.method, str(request.url), dict(request.headers), request.content)


def test_heartbeat_sends_the_exact_bytes_it_signed() -> None:
    # Given an agent client
    recorder = Recorder(httpx.Response(200, json=ACK))
    # When it heartbeats with a status, metrics and executions to renew
    recorder.agent().heartbeat(AGENT_ID, status="ok", metrics={"load1": 0.5}, running_executions=["exe_1"])
    sent = recorder.requests[0]
    # Then the body is the one compact serialisation, its digest is in Content-Digest,
    # and the signature (keyid = agent id) verifies over those exact bytes
    expected = encode_json({"status": "ok", "metrics": {"load1": 0.5}, "running_executions": ["exe_1"]})
    assert sent.content == expected
    assert sent.headers["content-type"] == "application/json"
    digest = base64.b64encode(hashlib.sha256(expected).digest()).decode()
    assert sent.headers["content-digest"] == f"sha-256=:{digest}:"
    assert sent.url == f"{BASE}/v1/agents/{AGENT_ID}/heartbeat"
    verify(sent, AGENT_ID)


def test_register_is_signed_by_the_new_key_with_the_fingerprint_as_keyid() -> None:
    # Given a new machine with a registration token
    recorder = Recorder(httpx.Response(201, json=REGISTERED))
    # When it registers
    result = recorder.agent().register("tok_1.secret", HARDWARE, KEY, KeyAlg.ED25519, tags={"env": "dev"})
    sent = recorder.requests[0]
    body = json.loads(sent.content)
    # Then the token is the bearer, the body carries the key and fingerprint, and the signature verifies
    assert result.agent_id == AGENT_ID
    assert sent.headers["authorization"] == "Bearer tok_1.secret"
    assert body["fingerprint"] == fingerprint(HARDWARE)
    assert body["public_key"] == public_key_pem(KEY)
    assert (body["key_alg"], body["tags"], body["hardware"]["cpu_model"]) == (
        "ed25519",
        {"env": "dev"},
        "Xeon",
    )
    verify(sent, fingerprint(HARDWARE))


def test_re_register_without_a_token_sends_no_authorization() -> None:
    recorder = Recorder(httpx.Response(201, json=REGISTERED))
    recorder.agent().register(None, HARDWARE, KEY, KeyAlg.ED25519)
    assert "authorization" not in recorder.requests[0].headers


def test_a_client_without_a_key_refuses_to_send_unsigned_agent_calls() -> None:
    client = FleetlinkClient(BASE, transport=Recorder(httpx.Response(200, json=ACK)).transport())
    with pytest.raises(ValueError, match="no signing key"):
        client.heartbeat(AGENT_ID)


# --- operator ------------------------------------------------------------------------------------


def _summary(agent_id: str) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "name": "edge-1",
        "state": "active",
        "liveness": "online",
        "last_seen_at": 1,
        "reported_status": "ok",
        "metrics": {},
        "tags": {},
        "capabilities": [],
        "agent_version": None,
        "fingerprint": "f" * 64,
        "key_alg": "ed25519",
        "public_key": public_key_pem(KEY),
        "encryption_public_key": None,
        "hardware": HARDWARE.model_dump(),
        "registered_at": 1,
        "updated_at": 1,
        "revoked_at": None,
    }


def test_operator_calls_carry_the_operator_token() -> None:
    recorder = Recorder(httpx.Response(200, json={"items": [], "cursor": None}))
    recorder.operator().list_agents(status="online", tag="env:dev", limit=10)
    sent = recorder.requests[0]
    assert sent.headers["authorization"] == "Bearer op-token"
    assert dict(sent.url.params) == {"status": "online", "tag": "env:dev", "limit": "10"}


def test_iter_agents_follows_cursors_to_the_last_page() -> None:
    # Given two pages of agents
    recorder = Recorder(
        httpx.Response(200, json={"items": [_summary("agt_1"), _summary("agt_2")], "cursor": "c1"}),
        httpx.Response(200, json={"items": [_summary("agt_3")], "cursor": None}),
    )
    # When every agent is listed / Then all pages are read, the second with the first's cursor
    assert [a.agent_id for a in recorder.operator().iter_agents(page_size=2)] == ["agt_1", "agt_2", "agt_3"]
    assert recorder.requests[1].url.params["cursor"] == "c1"


def test_replace_tags_puts_the_new_tags() -> None:
    recorder = Recorder(httpx.Response(200, json=_summary(AGENT_ID)))
    recorder.operator().replace_tags(AGENT_ID, {"role": "db"})
    sent = recorder.requests[0]
    assert (sent.method, sent.url.path, sent.content) == (
        "PUT",
        f"/v1/agents/{AGENT_ID}/tags",
        b'{"tags":{"role":"db"}}',
    )


@pytest.mark.parametrize(
    "url", ["https://h.example", "https://h.example/", "https://h.example/v1", "https://h.example/v1/"]
)
def test_the_base_url_may_include_the_api_prefix(url: str) -> None:
    assert api_root(url) == "https://h.example"
