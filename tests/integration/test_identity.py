"""Identity and trust, tried as an attacker would, through the real handlers on moto."""

from __future__ import annotations

import base64
import datetime
import json
from types import SimpleNamespace
from typing import Any

import pytest
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from fleetlink.core.clock import FixedClock
from tests.support import DOMAIN, Api, Machine, Reply, assert_generic_401, refusal_reasons


def _history(api: Api, agent_id: str | None) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = api.operator("operator", "GET", f"/v1/agents/{agent_id}").json[
        "registration_history"
    ]
    return history


@pytest.fixture
def victim(api: Api) -> Machine:
    """An agent of the prod ring, heartbeating."""
    machine = Machine("victim")
    assert api.register(machine, api.mint_token(tags={"ring": "prod"})).status == 201
    assert api.heartbeat(machine).status == 200
    return machine


def _copy_of(victim: Machine) -> Machine:
    """An attacker's machine presenting the victim's hardware and fingerprint with its own key."""
    return Machine(victim.name, machine_id=victim.machine_id)


# --- takeover -------------------------------------------------------------------------------------


def test_token_of_another_ring_with_copied_hardware_makes_a_new_agent(api: Api, victim: Machine) -> None:
    # Given an attacker holding a dev-ring token and the victim's fingerprint and hardware
    attacker = _copy_of(victim)
    # When it registers them with its own key
    reply = api.register(attacker, api.mint_token(tags={"ring": "dev"}))
    # Then it is a new agent of the dev ring, with nothing of the victim's
    assert reply.status == 201, reply.body
    assert (reply.json["agent_id"], reply.json["event"]) != (victim.agent_id, "re-register")
    assert reply.json["event"] == "register"
    shown = api.operator("operator", "GET", f"/v1/agents/{attacker.agent_id}").json
    assert (shown["tags"], shown["requested_tags"]) == ({"ring": "dev"}, {"env": "test"})
    # And the operator sees what it resembles, in the new agent's history
    (event,) = shown["registration_history"]
    assert event["resembles"] == {"agent_id": victim.agent_id, "score": 100, "same_fingerprint": True}
    # And the victim keeps its tags, its history, and heartbeating with its own key
    assert api.heartbeat(victim).status == 200
    kept = api.operator("operator", "GET", f"/v1/agents/{victim.agent_id}").json
    assert (kept["tags"], kept["requested_tags"]) == ({"ring": "prod"}, {"env": "test"})
    assert [e["event"] for e in kept["registration_history"]] == ["register"]


def test_copied_hardware_without_a_token_is_refused_and_the_victim_keeps_heartbeating(
    api: Api, victim: Machine, caplog: pytest.LogCaptureFixture
) -> None:
    # When an attacker presents the victim's fingerprint with its own key and no token
    assert_generic_401(api.register(_copy_of(victim), None))
    # Then the victim is untouched
    assert api.heartbeat(victim).status == 200
    assert refusal_reasons(caplog.records) == ["registration-token-missing"]


def test_key_of_another_agent_cannot_re_register_as_the_victim(api: Api, victim: Machine) -> None:
    # Given an attacker that names the victim's agent id as keyid, signing with its own key
    attacker = _copy_of(victim)
    # When it re-registers / Then the generic 401, and the victim is untouched
    assert_generic_401(api.register(attacker, api.mint_token(), key_id=victim.agent_id))
    assert api.heartbeat(victim).status == 200


def test_two_state_dirs_on_one_machine_are_two_agents(api: Api) -> None:
    # Given one machine whose two state dirs hold two keys
    token = api.mint_token()
    first, second = Machine("shared"), Machine("shared")
    # When both register
    assert api.register(first, token).status == 201
    assert api.register(second, token).status == 201
    # Then they are two agents that both keep heartbeating
    assert first.agent_id != second.agent_id
    assert (api.heartbeat(first).status, api.heartbeat(second).status) == (200, 200)


# --- key rotation ---------------------------------------------------------------------------------


def test_rotation_signed_by_the_current_key_keeps_the_id(api: Api, victim: Machine) -> None:
    # Given a new key for the agent
    new = Machine("victim")
    # When the agent installs it with a request signed by its current key, proved by the new one
    reply = api.rotate_key(victim, new)
    # Then same id, the new key signs from now on, the old one no longer does
    assert reply.status == 200, reply.body
    assert reply.json["agent_id"] == victim.agent_id
    new.agent_id = victim.agent_id
    assert api.heartbeat(new).status == 200
    assert_generic_401(api.heartbeat(victim))
    assert [e["event"] for e in _history(api, victim.agent_id)] == ["key-rotation", "register"]


def test_rotation_signed_by_the_new_key_alone_is_refused(api: Api, victim: Machine) -> None:
    # Given an attacker's key, with a valid proof of itself, signing as the victim's id
    attacker = Machine("attacker")
    # When it asks to install itself / Then the generic 401, and the victim's key still works
    assert_generic_401(api.rotate_key(victim, attacker, signer=attacker))
    assert api.heartbeat(victim).status == 200


def test_rotation_without_proof_of_the_new_key_is_refused(api: Api, victim: Machine) -> None:
    # Given a rotation signed by the current key naming a key whose proof another key made
    new, other = Machine("victim"), Machine("other")
    created = api.clock.now_ms() // 1000
    body = {
        "public_key": other.register_body()["public_key"],
        "key_alg": "ed25519",
        "created": created,
        "proof": api_rotate_proof(new, victim.agent_id, created),
    }
    # When sent / Then 422: possession of the new key is not shown
    reply = api.signed("registration", victim, "POST", f"/v1/agents/{victim.agent_id}/keys", body)
    assert reply.status == 422
    assert reply.problem_code() == "key-proof-invalid"


def test_proof_made_for_another_agent_is_refused(api: Api, victim: Machine) -> None:
    # Given a valid proof of a new key, but bound to another agent id
    new = Machine("victim")
    created = api.clock.now_ms() // 1000
    body = {
        "public_key": new.register_body()["public_key"],
        "key_alg": "ed25519",
        "created": created,
        "proof": api_rotate_proof(new, "agt_01J0000000000000000000000A", created),
    }
    # When the victim sends it / Then 422
    reply = api.signed("registration", victim, "POST", f"/v1/agents/{victim.agent_id}/keys", body)
    assert reply.problem_code() == "key-proof-invalid"


def api_rotate_proof(key_of: Machine, agent_id: str | None, created: int) -> str:
    from fleetlink.auth.key_proof import sign_key_proof
    from fleetlink.core.entities import KeyAlg

    return sign_key_proof(key_of.key, agent_id or "", KeyAlg.ED25519, created)


# --- recovery -------------------------------------------------------------------------------------


def test_recovery_token_lets_a_new_key_take_over_that_agent_once(api: Api, victim: Machine) -> None:
    # Given an operator's recovery token for the agent, whose key was lost
    minted = api.recovery_token(victim.agent_id or "", ttl_seconds=600)
    assert minted.status == 201, minted.body
    assert minted.headers.get("Cache-Control") == "no-store"
    replacement = Machine("victim")
    # When the machine registers a new key with it
    reply = api.register(replacement, minted.json["token"])
    # Then the new key holds the same id, tags and work; the old key is out
    assert reply.status == 201, reply.body
    assert (reply.json["agent_id"], reply.json["event"]) == (victim.agent_id, "recover")
    assert api.heartbeat(replacement).status == 200
    assert_generic_401(api.heartbeat(victim))
    shown = api.operator("operator", "GET", f"/v1/agents/{victim.agent_id}").json
    assert (shown["tags"], shown["requested_tags"]) == ({"ring": "prod"}, {"env": "test"})
    assert shown["registration_history"][0]["event"] == "recover"
    # And the token does not work twice: its holder is told it is used up
    again = api.register(Machine("victim"), minted.json["token"])
    assert (again.status, again.problem_code()) == (401, "registration-token-used-up")


def test_recovery_token_takes_over_only_its_own_agent(api: Api, victim: Machine) -> None:
    # Given a recovery token minted for another agent
    other = Machine("other")
    api.register(other, api.mint_token())
    token = api.recovery_token(other.agent_id or "").json["token"]
    # When the victim's copied hardware is registered with it
    reply = api.register(_copy_of(victim), token)
    # Then it is the token's agent that changed hands, never the victim
    assert reply.json["agent_id"] == other.agent_id
    assert api.heartbeat(victim).status == 200


def test_recovery_token_expires(api: Api, victim: Machine, clock: FixedClock) -> None:
    token = api.recovery_token(victim.agent_id or "", ttl_seconds=60).json["token"]
    clock.advance(61_000)
    late = api.register(Machine("victim"), token)
    assert (late.status, late.problem_code()) == (401, "registration-token-expired")


def test_revoked_stays_revoked_on_every_path(api: Api, victim: Machine) -> None:
    # Given a recovery token, then the agent revoked
    token = api.recovery_token(victim.agent_id or "").json["token"]
    api.operator("operator", "POST", f"/v1/agents/{victim.agent_id}/revoke")
    # Then: no heartbeat, no re-registration, no rotation, no recovery, no new recovery token
    assert api.heartbeat(victim).status == 403
    assert api.register(victim, None).status == 403
    assert api.rotate_key(victim, Machine("victim")).status == 403
    assert api.register(Machine("victim"), token).status == 403
    refused = api.recovery_token(victim.agent_id or "")
    assert (refused.status, refused.problem_code()) == (409, "agent-revoked")


# --- tokens ---------------------------------------------------------------------------------------


def test_token_tags_win_a_conflicting_tag_is_a_422_naming_it(api: Api) -> None:
    # Given a dev-ring token and an agent asking for the prod ring
    agent = Machine("greedy")
    body = agent.register_body(tags={"ring": "prod", "zone": "a"})
    # When it registers / Then refused, naming the tag; nothing registered
    reply = api.register(agent, api.mint_token(tags={"ring": "dev"}), body)
    assert reply.status == 422
    assert reply.problem_code() == "token-tag-conflict"
    assert "ring" in reply.problem()["detail"]


def test_token_tags_authorize_and_the_agents_own_are_labels(api: Api) -> None:
    agent = Machine("modest")
    body = agent.register_body(tags={"ring": "dev", "zone": "a"})
    assert api.register(agent, api.mint_token(tags={"ring": "dev"}), body).status == 201
    shown = api.operator("operator", "GET", f"/v1/agents/{agent.agent_id}").json
    assert (shown["tags"], shown["requested_tags"]) == ({"ring": "dev"}, {"zone": "a"})


def test_tokens_are_listed_without_their_secrets(api: Api) -> None:
    # Given a registration token and a recovery token
    token = api.mint_token(tags={"ring": "dev"})
    agent = Machine("listed")
    api.register(agent, token)
    recovery = api.recovery_token(agent.agent_id or "").json["token"]
    # When an operator lists tokens
    reply = api.operator("registration", "GET", "/v1/registration-tokens")
    # Then both are there, newest first, with their use counts, and no secret anywhere
    assert reply.status == 200
    items = reply.json["items"]
    assert [(i["token_id"], i["purpose"], i["uses"]) for i in items] == [
        (recovery.split(".")[0], "recovery", 0),
        (token.split(".")[0], "registration", 1),
    ]
    assert items[0]["agent_id"] == agent.agent_id
    for secret in (token.split(".")[1], recovery.split(".")[1]):
        assert secret not in reply.body
    assert "secret_hash" not in reply.body


def test_revoked_token_is_refused(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    # Given a token an operator revoked
    token = api.mint_token()
    token_id = token.split(".")[0]
    reply = api.operator("registration", "DELETE", f"/v1/registration-tokens/{token_id}")
    assert reply.status == 200
    assert reply.json["revoked_at"] == api.clock.now_ms()
    # When a machine registers with it / Then the holder of the genuine token is told it was revoked
    late = api.register(Machine("late"), token)
    assert (late.status, late.problem_code()) == (401, "registration-token-revoked")
    assert "revoked" in late.json["detail"]
    assert refusal_reasons(caplog.records) == ["registration-token-revoked"]
    # And revoking again is harmless, an unknown token a 404
    assert api.operator("registration", "DELETE", f"/v1/registration-tokens/{token_id}").status == 200
    unknown = api.operator("registration", "DELETE", "/v1/registration-tokens/tok_01J0000000000000000000000A")
    assert unknown.status == 404


# --- history --------------------------------------------------------------------------------------


def test_history_cannot_be_flushed_by_unauthenticated_attempts(
    api: Api, victim: Machine, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # When 25 token-less attempts present the victim's fingerprint with other keys
    for _ in range(25):
        assert_generic_401(api.register(_copy_of(victim), None))
    # Then the victim's history holds only its own register event
    assert [e["event"] for e in _history(api, victim.agent_id)] == ["register"]
    # And each attempt is logged and counted as a metric instead
    assert refusal_reasons(caplog.records) == ["registration-token-missing"] * 25
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    refused = [m for m in metrics if "AuthenticationRefused" in m]
    assert len(refused) == 25
    assert refused[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "fleetlink"


# --- uniform answers ------------------------------------------------------------------------------


def test_generic_401_is_identical_for_unknown_and_real_agent_ids(api: Api, victim: Machine) -> None:
    # Given a stranger's signature naming a real agent id, and one naming an unknown id
    stranger = Machine("stranger")
    unknown_id = "agt_01J0000000000000000000000A"
    real = api.signed(
        "heartbeat", stranger, "POST", f"/v1/agents/{victim.agent_id}/heartbeat", {}, key_id=victim.agent_id
    )
    unknown = api.signed(
        "heartbeat", stranger, "POST", f"/v1/agents/{unknown_id}/heartbeat", {}, key_id=unknown_id
    )
    # Then both answers are the same bytes (the request id travels outside the body)
    assert_generic_401(real)
    assert (real.status, real.headers, real.body) == (unknown.status, unknown.headers, unknown.body)


def test_register_reveals_nothing_about_a_fingerprint_without_a_token(api: Api, victim: Machine) -> None:
    # Given a fingerprint of an active agent, one of a revoked agent, and an unknown one
    revoked = Machine("revoked")
    api.register(revoked, api.mint_token())
    api.operator("operator", "POST", f"/v1/agents/{revoked.agent_id}/revoke")
    answers = {
        name: api.register(Machine(name, machine_id=machine.machine_id), None)
        for name, machine in (("known", victim), ("revoked", revoked), ("unknown", Machine("nobody")))
    }
    # Then all three get the same answer
    assert len({(r.status, r.body) for r in answers.values()}) == 1
    assert_generic_401(answers["known"])


# --- signatures -----------------------------------------------------------------------------------


def _signed_over_path_and_authority(api: Api, agent: Machine, path: str, query: str) -> dict[str, str]:
    """A signature that covers @path and @authority but not the query string."""
    body, key_id = b"{}", agent.agent_id or ""
    message = SimpleNamespace(method="POST", url=f"https://{DOMAIN}{path}?{query}", headers={})
    HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: agent.key}),
    ).sign(
        message,
        key_id=key_id,
        created=datetime.datetime.fromtimestamp(api.clock.now_ms() / 1000, tz=datetime.UTC),
        nonce="query-nonce",
        covered_component_ids=("@method", "@path", "@authority", "content-digest"),
        body=body,
    )
    return {"Content-Type": "application/json", **message.headers}


def test_query_string_outside_the_covered_components_is_a_401(
    api: Api, victim: Machine, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a heartbeat signed over @path and @authority, with ?admin=1 appended
    path = f"/v1/agents/{victim.agent_id}/heartbeat"
    headers = _signed_over_path_and_authority(api, victim, path, "admin=1")
    # When sent / Then 401: the query string is not covered
    reply = api.call("heartbeat", "POST", path, body=b"{}", headers=headers, query="admin=1")
    assert_generic_401(reply)
    assert refusal_reasons(caplog.records) == ["signature-components-missing"]


def test_a_signed_query_string_is_accepted(api: Api, victim: Machine) -> None:
    path = f"/v1/agents/{victim.agent_id}/heartbeat"
    raw = b"{}"
    headers = api.signed_headers(victim, "POST", path, raw, query="full=1")
    assert api.call("heartbeat", "POST", path, body=raw, headers=headers, query="full=1").status == 200


def test_registration_cannot_burn_an_agents_nonce(api: Api, victim: Machine) -> None:
    # Given a registration with a valid token, whose fingerprint and keyid are the victim's agent id,
    # signed by another key with nonce n
    newcomer = Machine("newcomer")
    body = newcomer.register_body(fingerprint=victim.agent_id)
    raw = json.dumps(body).encode()
    headers = api.signed_headers(
        newcomer, "POST", "/v1/agents/register", raw, key_id=victim.agent_id, nonce="n-1"
    )
    headers["Authorization"] = f"Bearer {api.mint_token()}"
    api.call("registration", "POST", "/v1/agents/register", body=raw, headers=headers)
    # When the victim then signs with nonce n / Then it is accepted
    assert api.heartbeat(victim, nonce="n-1").status == 200


# --- authentication before parsing ----------------------------------------------------------------


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every run of Powertools' request validation (the step that parses the body), by path."""
    runs: list[str] = []
    original = OpenAPIRequestValidationMiddleware.handler

    def spy(self: Any, app: Any, next_middleware: Any) -> Any:
        runs.append(app.current_event.raw_event["rawPath"])
        return original(self, app, next_middleware)

    monkeypatch.setattr(OpenAPIRequestValidationMiddleware, "handler", spy)
    return runs


@pytest.mark.parametrize(
    ("function", "path"),
    [
        ("heartbeat", "/v1/agents/agt_01J0000000000000000000000A/heartbeat"),
        ("registration", "/v1/agents/register"),
        ("registration", "/v1/registration-tokens"),
    ],
)
def test_unsigned_request_with_a_malformed_5_mib_body_is_a_401_unparsed(
    api: Api, validations: list[str], function: str, path: str
) -> None:
    # Given 5 MiB of broken JSON, without a signature or token
    body = b"{" * (5 * 1024 * 1024)
    # When posted / Then a 401, and the body never reached the parsing step
    reply = api.call(function, "POST", path, body=body, headers={"Content-Type": "application/json"})
    assert reply.status == 401
    assert validations == []


def test_an_authenticated_request_is_validated(api: Api, victim: Machine, validations: list[str]) -> None:
    # The spy sees validation when authentication passed (so its silence above means something)
    assert api.heartbeat(victim).status == 200
    assert validations == [f"/v1/agents/{victim.agent_id}/heartbeat"]


def test_signed_but_oversized_body_is_a_413(api: Api, victim: Machine, validations: list[str]) -> None:
    raw = json.dumps({"status": "ok", "pad": "x" * (1024 * 1024)}).encode()
    reply = api.heartbeat(victim, raw)  # type: ignore[arg-type]
    assert reply.status == 413
    assert validations == []


# --- cursors --------------------------------------------------------------------------------------


def _forged(position: dict[str, Any]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")
    return f"{payload}.{'A' * 22}"


@pytest.mark.parametrize(("function", "path"), [("operator", "/v1/agents"), ("tasks", "/v1/tasks")])
@pytest.mark.parametrize(
    "cursor",
    [
        _forged({"s": 0, "k": {"pk": {"S": "AGENT#x"}, "evil": {"S": "1"}, "n": {"N": "1"}}}),
        _forged({"m": 0, "k": None}),
        "eyJzIjo5OSwiayI6bnVsbH0",
        "not-a-cursor",
    ],
)
def test_forged_cursor_is_a_400(api: Api, function: str, path: str, cursor: str) -> None:
    reply = api.operator(function, "GET", path, query=f"cursor={cursor}")
    assert reply.status == 400, reply.body
    assert reply.problem_code() == "invalid-cursor"


def _agents_page(api: Api, query: str) -> Reply:
    return api.operator("operator", "GET", "/v1/agents", query=query)


def test_cursor_reused_with_another_filter_or_altered_is_a_400(api: Api) -> None:
    # Given a genuine cursor of the agent list filtered by tag
    token = api.mint_token(tags={"ring": "dev"})
    for i in range(3):
        api.register(Machine(f"paged-{i}"), token)
    cursor = _agents_page(api, "limit=1&tag=ring:dev").json["cursor"]
    assert cursor
    # Then it pages its own list, but not another filter's, and not once altered
    assert _agents_page(api, f"limit=1&tag=ring:dev&cursor={cursor}").status == 200
    assert _agents_page(api, f"limit=1&tag=ring:prod&cursor={cursor}").status == 400
    assert _agents_page(api, f"limit=1&cursor={cursor}").status == 400
    payload, tag = cursor.split(".")
    altered = f"{payload}.{tag[:5]}{'A' if tag[5] != 'A' else 'B'}{tag[6:]}"
    assert _agents_page(api, f"limit=1&tag=ring:dev&cursor={altered}").status == 400


def test_authentication_reads_the_agent_consistently(api: Api, victim: Machine) -> None:
    """A key rotated a moment ago must be seen: the agent lookup is a strongly consistent read."""
    from fleetlink.store.base import table_client

    queries: list[dict[str, Any]] = []
    client = table_client()
    client.meta.events.register(
        "before-parameter-build.dynamodb.Query", lambda params, **_: queries.append(params)
    )
    # When the agent heartbeats
    assert api.heartbeat(victim).status == 200
    # Then its profile was read with ConsistentRead
    pk = {"S": f"AGENT#{victim.agent_id}"}
    agent_reads = [q for q in queries if pk in q.get("ExpressionAttributeValues", {}).values()]
    assert agent_reads
    assert all(q.get("ConsistentRead") is True for q in agent_reads)


def test_task_cursor_keeps_its_place_across_a_month_boundary(api: Api, clock: FixedClock) -> None:
    # Given three tasks created on the same day, and a first page of one
    agent = Machine("monthly")
    api.register(agent, api.mint_token())
    created = []
    for _ in range(3):
        body = {"type": "shell", "command": "true", "targets": {"agent_ids": [agent.agent_id]}}
        created.append(api.operator("tasks", "POST", "/v1/tasks", body).json["task_id"])
        clock.advance(1_000)
    first = api.operator("tasks", "GET", "/v1/tasks", query="limit=1").json
    # When the next pages are asked for 40 days later (a month boundary passed)
    clock.advance(40 * 86_400_000)
    seen, cursor = [item["task_id"] for item in first["items"]], first["cursor"]
    for _ in range(20):  # bounded: 3 tasks, 13 months
        if not cursor:
            break
        page = api.operator("tasks", "GET", "/v1/tasks", query=f"limit=1&cursor={cursor}").json
        seen += [item["task_id"] for item in page["items"]]
        cursor = page["cursor"]
    # Then every task is listed once, newest first: the cursor holds the month, not an offset
    assert seen == created[::-1]
