"""Registration tokens, register and re-register, through the real handlers on moto."""

from __future__ import annotations

import json

import pytest

from fleetlink.core.clock import FixedClock
from fleetlink.core.entities import KeyAlg
from tests.support import Api, Machine, assert_generic_401, operator_headers, refusal_reasons


def test_minted_token_is_shown_once_and_stored_only_hashed(api: Api, deps) -> None:  # type: ignore[no-untyped-def]
    # When an operator mints a token
    reply = api.operator(
        "registration", "POST", "/v1/registration-tokens", {"max_uses": 2, "ttl_seconds": 600}
    )
    # Then it comes back once, with its limits, and the table holds no plaintext of it
    assert reply.status == 201
    body = reply.json
    assert body["max_uses"] == 2
    assert body["token"].startswith(body["token_id"] + ".")
    secret = body["token"].split(".", 1)[1]
    stored = deps.registrations.get_token(body["token_id"])
    assert stored is not None
    assert secret not in stored.model_dump_json()
    assert reply.headers.get("Cache-Control") == "no-store"


@pytest.mark.parametrize("alg", [KeyAlg.ED25519, KeyAlg.RSA_PSS_SHA512])
def test_new_agent_registers_with_a_token_and_its_own_key(api: Api, alg: KeyAlg) -> None:
    # Given a token and a machine with a new key
    token = api.mint_token(tags={"role": "web"})
    agent = Machine("web-1", alg=alg)
    # When it registers
    reply = api.register(agent, token)
    # Then it gets an agent id, with the token's tags merged into its own
    assert reply.status == 201, reply.body
    assert reply.json["agent_id"].startswith("agt_")
    assert reply.json["event"] == "register"
    shown = api.operator("operator", "GET", f"/v1/agents/{agent.agent_id}").json
    assert (shown["tags"], shown["requested_tags"]) == ({"role": "web"}, {"env": "test"})
    assert shown["liveness"] == "never_seen"


def test_restart_re_registers_same_id_without_a_token(api: Api) -> None:
    # Given a registered agent whose one-use token is spent
    agent = Machine("db-1")
    api.register(agent, api.mint_token(max_uses=1))
    first_id = agent.agent_id
    # When it re-registers with the same key and hardware, with no token
    reply = api.register(agent, None)
    # Then it keeps its id and the event is a re-register scored 100
    assert reply.status == 201, reply.body
    assert (reply.json["agent_id"], reply.json["event"], reply.json["similarity_score"]) == (
        first_id,
        "re-register",
        100,
    )


def test_re_registration_history_keeps_similarity_scores(api: Api) -> None:
    # Given a registered agent that comes back with a new IP and hostname
    agent = Machine("app-1")
    api.register(agent, api.mint_token())
    changed = agent.register_body(hardware=agent.hardware(ip_address="10.9.9.9", hostname="app-1b"))
    api.register(agent, None, changed)
    # When an operator reads it
    history = api.operator("operator", "GET", f"/v1/agents/{agent.agent_id}").json["registration_history"]
    # Then both events are there, newest first, with the drift scored
    assert [e["event"] for e in history] == ["re-register", "register"]
    assert 0 < history[0]["similarity_score"] < 100
    assert history[0]["hardware"]["ip_address"] == "10.9.9.9"


def test_new_key_for_a_known_fingerprint_without_a_token_is_the_generic_401(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a registered machine, and another key presenting its fingerprint without a token
    agent = Machine("edge-1")
    api.register(agent, api.mint_token())
    impostor = Machine("edge-1")
    # When it registers
    reply = api.register(impostor, None)
    # Then the generic 401, the reason only in the logs, and nothing in the victim's history
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records) == ["registration-token-missing"]
    history = api.operator("operator", "GET", f"/v1/agents/{agent.agent_id}").json["registration_history"]
    assert [e["event"] for e in history] == ["register"]


def test_changed_hardware_with_the_current_key_keeps_the_id(api: Api) -> None:
    # Given a registered agent whose machine id changed (new board), still holding its key
    agent = Machine("vm-1")
    api.register(agent, api.mint_token())
    first_id = agent.agent_id
    body = agent.register_body(hardware=agent.hardware(machine_id="new-board"), fingerprint="f" * 64)
    # When it re-registers signed by its current key, with no token
    reply = api.register(agent, None, body)
    # Then the key is the identity: same id, the drift scored 0 in the history
    assert reply.status == 201, reply.body
    assert (reply.json["agent_id"], reply.json["similarity_score"]) == (first_id, 0)
    shown = api.operator("operator", "GET", f"/v1/agents/{first_id}").json
    assert shown["fingerprint"] == "f" * 64


def test_re_registration_cannot_change_the_key(api: Api) -> None:
    # Given a registered agent re-registering with a body naming another key
    agent = Machine("keep-1")
    api.register(agent, api.mint_token())
    body = agent.register_body(public_key=Machine("other").register_body()["public_key"])
    # When sent signed by its current key / Then 409: keys change only by rotation
    reply = api.register(agent, None, body)
    assert reply.status == 409
    assert reply.problem_code() == "key-change-needs-rotation"


def test_revoked_agent_cannot_re_register(api: Api) -> None:
    agent = Machine("gone-1")
    api.register(agent, api.mint_token())
    api.operator("operator", "POST", f"/v1/agents/{agent.agent_id}/revoke")
    reply = api.register(agent, api.mint_token())
    assert reply.status == 403
    assert reply.problem_code() == "agent-revoked"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "registration-token-missing"),
        (
            "tok_01J0000000000000000000000A.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "registration-token-invalid",
        ),
        ("not-a-token", "registration-token-invalid"),
        ("x" * 4000, "registration-token-invalid"),
    ],
)
def test_missing_unknown_or_malformed_token_is_the_generic_401(
    api: Api, caplog: pytest.LogCaptureFixture, token: str | None, reason: str
) -> None:
    reply = api.register(Machine("nobody"), token)
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records) == [reason]
    assert token is None or token not in reply.body


def test_expired_token_is_refused(api: Api, clock: FixedClock, caplog: pytest.LogCaptureFixture) -> None:
    # Given a token that lived 60 s, 61 s ago
    token = api.mint_token(ttl_seconds=60)
    clock.advance(61_000)
    # When an agent registers with it
    reply = api.register(Machine("late-1"), token)
    # Then the holder of the genuine token is told it expired (and the logs say so too)
    assert (reply.status, reply.problem_code()) == (401, "registration-token-expired")
    assert reply.json["title"] == "Registration token not usable"
    assert refusal_reasons(caplog.records) == ["registration-token-expired"]


def test_used_up_token_is_refused(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    token = api.mint_token(max_uses=1)
    # Given a one-use token, used
    assert api.register(Machine("one"), token).status == 201
    # When another machine registers with it / Then it is told the token is used up
    reply = api.register(Machine("two"), token)
    assert (reply.status, reply.problem_code()) == (401, "registration-token-used-up")
    assert "used up" in reply.json["detail"]
    assert refusal_reasons(caplog.records) == ["registration-token-used-up"]


def test_right_token_id_with_wrong_secret_is_refused(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    token_id = api.mint_token().split(".")[0]
    assert_generic_401(api.register(Machine("guess"), f"{token_id}.{'A' * 43}"))
    assert refusal_reasons(caplog.records) == ["registration-token-invalid"]


def test_registration_signed_by_another_key_is_refused(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    # Given a body carrying agent A's public key, signed by B's key
    a, b = Machine("a"), Machine("b")
    body = a.register_body()
    raw = json.dumps(body).encode()
    headers = api.signed_headers(b, "POST", "/v1/agents/register", raw, key_id=a.fingerprint)
    headers["Authorization"] = f"Bearer {api.mint_token()}"
    # When it registers / Then no proof of possession: 401
    reply = api.call("registration", "POST", "/v1/agents/register", body=raw, headers=headers)
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records) == ["signature-invalid"]


def test_registration_keyid_must_be_the_fingerprint(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    agent = Machine("k")
    raw = json.dumps(agent.register_body()).encode()
    headers = api.signed_headers(agent, "POST", "/v1/agents/register", raw, key_id="someone-else")
    headers["Authorization"] = f"Bearer {api.mint_token()}"
    reply = api.call("registration", "POST", "/v1/agents/register", body=raw, headers=headers)
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records) == ["signature-keyid-mismatch"]


def test_garbage_public_key_is_a_400(api: Api) -> None:
    agent = Machine("bad-key")
    body = agent.register_body(
        public_key="-----BEGIN PUBLIC KEY-----\n" + "A" * 80 + "\n-----END PUBLIC KEY-----\n"
    )
    reply = api.register(agent, api.mint_token(), body)
    assert reply.status == 400
    assert reply.problem_code() == "invalid-public-key"


def test_key_of_the_wrong_algorithm_is_a_400(api: Api) -> None:
    agent = Machine("mismatch")
    reply = api.register(agent, api.mint_token(), agent.register_body(key_alg="rsa-pss-sha512"))
    assert reply.status == 400
    assert reply.problem_code() == "invalid-public-key"


def test_token_mint_needs_the_operator(api: Api) -> None:
    reply = api.call("registration", "POST", "/v1/registration-tokens", body={"max_uses": 1})
    assert reply.status == 401
    wrong = operator_headers() | {"Authorization": "Bearer nope"}
    assert api.call("registration", "POST", "/v1/registration-tokens", body={}, headers=wrong).status == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_uses": 0}, "max_uses"),
        ({"ttl_seconds": -5}, "ttl_seconds"),
        ({"tags": {"bad key!": "x"}}, "tags"),
        ({"max_uses": 1, "surprise": True}, "surprise"),
        ({"name_prefix": "UPPER"}, "name_prefix"),
    ],
)
def test_bad_token_requests_get_field_errors(api: Api, body: dict[str, object], field: str) -> None:
    reply = api.operator("registration", "POST", "/v1/registration-tokens", body)
    assert reply.status == 422
    assert any(field in e["loc"] for e in reply.problem()["errors"])


def test_body_that_is_not_utf8_is_a_400(api: Api) -> None:
    # Given bytes API Gateway can only pass on base64-encoded
    reply = api.call(
        "registration", "POST", "/v1/registration-tokens", body=b"\xff\xfe{", headers=operator_headers()
    )
    # Then it is malformed input, not a server error
    assert reply.status == 400
    assert reply.problem_code() == "malformed-json"


@pytest.mark.parametrize("missing", ["fingerprint", "public_key", "key_alg", "hardware"])
def test_registration_missing_a_required_field_gets_a_field_error(api: Api, missing: str) -> None:
    # Given a registration body without one required field
    agent = Machine("partial")
    body = agent.register_body()
    del body[missing]
    # When sent / Then 422 naming the field
    reply = api.register(agent, api.mint_token(), body)
    assert reply.status == 422
    assert ["body", missing] in [e["loc"] for e in reply.problem()["errors"]]


def test_a_second_agent_of_one_machine_with_the_same_name_is_warned(api: Api) -> None:
    # Given an agent of machine "box" registered under the default name
    token = api.mint_token(max_uses=3)
    first = api.register(Machine("box"), token)
    assert first.status == 201, first.body
    assert first.json["name"] == "box"
    assert first.json["warnings"] == []
    # When a second state dir of the same machine registers (a new key) without a name of its own
    second = api.register(Machine("box"), token)
    # Then it is registered, and told which agent of its machine already has that name
    assert second.status == 201, second.body
    (warning,) = second.json["warnings"]
    assert first.json["agent_id"] in warning
    # And with a name suffix (another state dir's name) there is nothing to warn about
    third = Machine("box")
    answer = api.register(third, token, third.register_body(name_suffix="db"))
    assert (answer.json["name"], answer.json["warnings"]) == ("box-db", [])
