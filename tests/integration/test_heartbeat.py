"""Signed heartbeats and every way a hostile caller can get them wrong."""

from __future__ import annotations

import json

import pytest

from fleetlink.core.clock import FixedClock
from tests.support import Api, Machine, assert_generic_401, refusal_reasons


@pytest.fixture
def agent(api: Api) -> Machine:
    machine = Machine("hb-1")
    assert api.register(machine, api.mint_token()).status == 201
    return machine


def test_heartbeat_answers_what_is_waiting_and_marks_the_agent_online(api: Api, agent: Machine) -> None:
    # When a registered agent heartbeats
    reply = api.heartbeat(agent, {"status": "ok", "metrics": {"load1": 0.5}})
    # Then it learns the interval and what waits, and operators see it online
    assert reply.status == 200, reply.body
    assert reply.json == {
        "server_time": api.clock.now_ms(),
        "heartbeat_interval_s": 60,
        "pending_executions": 0,
        "tunnels_version": 0,
        "renewed": [],
        "cancel": [],
    }
    shown = api.operator("operator", "GET", f"/v1/agents/{agent.agent_id}").json
    assert (shown["liveness"], shown["last_seen_at"], shown["metrics"]) == (
        "online",
        api.clock.now_ms(),
        {"load1": 0.5},
    )


def test_silent_agent_becomes_connection_lost(api: Api, agent: Machine, clock: FixedClock) -> None:
    api.heartbeat(agent)
    clock.advance(3 * 60_000 + 1)
    assert (
        api.operator("operator", "GET", f"/v1/agents/{agent.agent_id}").json["liveness"] == "connection_lost"
    )


def test_replayed_nonce_is_refused(api: Api, agent: Machine, caplog: pytest.LogCaptureFixture) -> None:
    # Given a heartbeat that went through
    path = f"/v1/agents/{agent.agent_id}/heartbeat"
    raw = b'{"status":"ok"}'
    headers = api.signed_headers(agent, "POST", path, raw)
    assert api.call("heartbeat", "POST", path, body=raw, headers=headers).status == 200
    # When the very same request is sent again / Then 401 replayed
    again = api.call("heartbeat", "POST", path, body=raw, headers=headers)
    assert_generic_401(again)
    assert refusal_reasons(caplog.records)[-1] == "signature-replayed"


def test_nonce_whose_ttl_passed_but_is_not_yet_deleted_counts_as_unseen(
    api: Api, agent: Machine, clock: FixedClock
) -> None:
    # Given a nonce used 11 minutes ago (its item is past its TTL; DynamoDB deletes late)
    api.heartbeat(agent, nonce="reused-nonce")
    clock.advance(11 * 60_000)
    # When a fresh signature uses the same nonce / Then it is accepted
    assert api.heartbeat(agent, nonce="reused-nonce").status == 200


@pytest.mark.parametrize(("offset_s", "status"), [(-301, 401), (301, 401), (-299, 200), (299, 200)])
def test_created_must_be_within_300_seconds(
    api: Api, agent: Machine, offset_s: int, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    reply = api.heartbeat(agent, created=api.clock.now_ms() // 1000 + offset_s)
    assert reply.status == status, reply.body
    if status == 401:
        assert_generic_401(reply)
        assert refusal_reasons(caplog.records)[-1] == "signature-expired"


def test_tampered_body_is_refused(api: Api, agent: Machine, caplog: pytest.LogCaptureFixture) -> None:
    path = f"/v1/agents/{agent.agent_id}/heartbeat"
    headers = api.signed_headers(agent, "POST", path, b'{"status":"ok"}')
    reply = api.call("heartbeat", "POST", path, body=b'{"status":"busy"}', headers=headers)
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records)[-1] == "content-digest-mismatch"


def test_tampered_body_with_recomputed_digest_is_refused(
    api: Api, agent: Machine, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an attacker who swaps the body and fixes Content-Digest (which the signature covers)
    from http_message_signatures.digests import ContentDigest

    path = f"/v1/agents/{agent.agent_id}/heartbeat"
    headers = api.signed_headers(agent, "POST", path, b'{"status":"ok"}')
    headers["Content-Digest"] = ContentDigest.create(b'{"status":"busy"}')
    reply = api.call("heartbeat", "POST", path, body=b'{"status":"busy"}', headers=headers)
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records)[-1] == "signature-invalid"


def test_tampered_path_is_refused(api: Api, agent: Machine, caplog: pytest.LogCaptureFixture) -> None:
    # Given a signed heartbeat whose URL gains a query string on the way
    path = f"/v1/agents/{agent.agent_id}/heartbeat"
    raw = b'{"status":"ok"}'
    headers = api.signed_headers(agent, "POST", path, raw)
    reply = api.call("heartbeat", "POST", path, body=raw, headers=headers, query="x=1")
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records)[-1] == "signature-invalid"


def test_signature_by_another_agents_key_is_refused(
    api: Api, agent: Machine, caplog: pytest.LogCaptureFixture
) -> None:
    other = Machine("hb-2")
    api.register(other, api.mint_token())
    # Given B's signature claiming A's keyid
    path = f"/v1/agents/{agent.agent_id}/heartbeat"
    # When it is sent
    reply = api.signed("heartbeat", other, "POST", path, {"status": "ok"}, key_id=agent.agent_id)
    # Then the signature does not verify under A's key
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records)[-1] == "signature-invalid"


def test_agent_cannot_heartbeat_for_another_agent(api: Api, agent: Machine) -> None:
    other = Machine("hb-3")
    api.register(other, api.mint_token())
    # Given B's own valid signature on A's heartbeat path
    reply = api.signed("heartbeat", other, "POST", f"/v1/agents/{agent.agent_id}/heartbeat", {"status": "ok"})
    assert reply.status == 403
    assert reply.problem_code() == "not-your-resource"


def test_missing_content_digest_is_refused(
    api: Api, agent: Machine, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/v1/agents/{agent.agent_id}/heartbeat"
    headers = api.signed_headers(agent, "POST", path, b"")  # signed as if bodiless
    reply = api.call("heartbeat", "POST", path, body=b'{"status":"ok"}', headers=headers)
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records)[-1] == "signature-components-missing"


def test_unsigned_request_is_refused(api: Api, agent: Machine, caplog: pytest.LogCaptureFixture) -> None:
    reply = api.call("heartbeat", "POST", f"/v1/agents/{agent.agent_id}/heartbeat", body={"status": "ok"})
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records)[-1] == "signature-missing"


def test_garbage_signature_headers_are_refused(
    api: Api, agent: Machine, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Signature-Input": "sig=(((", "Signature": "sig=:@@@:"}
    reply = api.call("heartbeat", "POST", f"/v1/agents/{agent.agent_id}/heartbeat", body={}, headers=headers)
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records)[-1] == "signature-malformed"


def test_unknown_agent_is_refused(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    stranger = Machine("stranger")
    stranger.agent_id = "agt_01J00000000000000000000000"
    reply = api.heartbeat(stranger)
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records)[-1] == "unknown-key"


def test_revoked_agent_is_forbidden(api: Api, agent: Machine) -> None:
    api.operator("operator", "POST", f"/v1/agents/{agent.agent_id}/revoke")
    reply = api.heartbeat(agent)
    assert reply.status == 403
    assert reply.problem_code() == "agent-revoked"


def test_malformed_json_is_a_400(api: Api, agent: Machine) -> None:
    reply = api.heartbeat(agent, b'{"status": ')  # type: ignore[arg-type]
    assert reply.status == 400
    assert reply.problem_code() == "malformed-json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": 5}, "status"),
        ({"metrics": {"load": "high"}}, "metrics"),
        ({"metrics": {f"m{i}": 1.0 for i in range(17)}}, "metrics"),
        ({"running_executions": "exe_1"}, "running_executions"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_wrong_types_get_field_errors(api: Api, agent: Machine, body: dict[str, object], field: str) -> None:
    reply = api.heartbeat(agent, body)
    assert reply.status == 422
    assert any(field in e["loc"] for e in reply.problem()["errors"])


def test_body_over_one_mebibyte_is_a_413(api: Api, agent: Machine) -> None:
    raw = json.dumps({"status": "ok", "pad": "x" * (1024 * 1024)}).encode()
    reply = api.heartbeat(agent, raw)  # type: ignore[arg-type]
    assert reply.status == 413
    assert reply.problem_code() == "payload-too-large"


def test_malformed_agent_id_in_path_is_refused(api: Api, agent: Machine) -> None:
    reply = api.signed("heartbeat", agent, "POST", "/v1/agents/not-an-id/heartbeat", {"status": "ok"})
    assert reply.status == 422


def test_signature_moved_to_another_path_is_refused(
    api: Api, agent: Machine, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a heartbeat signed for A's path, sent to another agent's path
    other = Machine("hb-4")
    api.register(other, api.mint_token())
    raw = b'{"status":"ok"}'
    headers = api.signed_headers(agent, "POST", f"/v1/agents/{agent.agent_id}/heartbeat", raw)
    # When it arrives / Then the signed @target-uri no longer matches
    reply = api.call("heartbeat", "POST", f"/v1/agents/{other.agent_id}/heartbeat", body=raw, headers=headers)
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records)[-1] == "signature-invalid"
