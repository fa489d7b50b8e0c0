"""`fleetlink dev` over real HTTP: API Gateway routing, the handlers, moto, and signed agents."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from fleetlink.api.deps import Deps
from fleetlink.api.document import route_table
from fleetlink.api.functions import FUNCTIONS, Duty
from fleetlink.auth.keys import PrivateKey, generate_private_key, public_key_pem
from fleetlink.auth.signatures import sign_request
from fleetlink.core.entities import KeyAlg
from fleetlink.local.server import DevStack
from tests.e2e.conftest import DevServer, start_dev_process

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

PROBLEM = "application/problem+json"


@dataclass
class Agent:
    """A machine with its own Ed25519 key; ``agent_id`` once registered."""

    key: PrivateKey
    fingerprint: str
    agent_id: str = ""

    @classmethod
    def new(cls) -> Agent:
        key = generate_private_key(KeyAlg.ED25519)
        return cls(key, "fp-" + hashlib.sha256(public_key_pem(key).encode()).hexdigest())


def operator(server: DevServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.operator_token}"}


#: URL, headers and body of a signed request.
Signed = tuple[str, dict[str, str], bytes]


def signed(
    server: DevServer,
    agent: Agent,
    path: str,
    payload: Any,
    *,
    key_id: str,
    extra: dict[str, str] | None = None,
) -> Signed:
    """URL, headers and body of a POST signed by the agent's key (RFC 9421)."""
    url = f"{server.url}{path}"
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **(extra or {})}
    headers |= sign_request(
        "POST", url, headers, body, private_key=agent.key, key_id=key_id, key_alg=KeyAlg.ED25519
    )
    return url, headers, body


def mint_token(client: httpx.Client, server: DevServer) -> str:
    response = client.post("/v1/registration-tokens", json={"max_uses": 5}, headers=operator(server))
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def register_request(server: DevServer, agent: Agent, token: str) -> Signed:
    payload = {
        "fingerprint": agent.fingerprint,
        "public_key": public_key_pem(agent.key),
        "key_alg": "ed25519",
        "hardware": {
            "machine_id": agent.fingerprint[:20],
            "hostname": "e2e-host",
            "os": "linux",
            "arch": "x86_64",
        },
        "tags": {"suite": "e2e"},
    }
    extra = {"Authorization": f"Bearer {token}"}
    return signed(server, agent, "/v1/agents/register", payload, key_id=agent.fingerprint, extra=extra)


def registered(client: httpx.Client, server: DevServer) -> Agent:
    agent = Agent.new()
    url, headers, body = register_request(server, agent, mint_token(client, server))
    response = client.post(url, headers=headers, content=body)
    assert response.status_code == 201, response.text
    agent.agent_id = response.json()["agent_id"]
    return agent


def heartbeat_request(server: DevServer, agent: Agent) -> Signed:
    path = f"/v1/agents/{agent.agent_id}/heartbeat"
    return signed(server, agent, path, {"status": "ok"}, key_id=agent.agent_id)


def problem_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == PROBLEM, response.text
    document: dict[str, Any] = response.json()
    assert document["status"] == response.status_code
    return document


# --- public routes ---------------------------------------------------------------------------------


def test_health_answers(client: httpx.Client) -> None:
    # Given a running dev stack
    # When health is asked for
    response = client.get("/v1/health")

    # Then it is ok
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readiness_sees_the_table(client: httpx.Client) -> None:
    # Given a running dev stack on moto
    # When readiness is asked for
    response = client.get("/v1/health/ready")

    # Then the table answers
    assert response.status_code == 200
    assert response.json()["checks"] == {"table": "ok"}


def test_openapi_lists_every_route(client: httpx.Client) -> None:
    # Given the routes the functions serve
    expected = {(method, path) for _, method, path in route_table()}

    # When the OpenAPI document is fetched
    paths = client.get("/v1/openapi.json").json()["paths"]

    # Then every route is in it
    served = {(method.upper(), path) for path, methods in paths.items() for method in methods}
    assert expected <= served


def test_docs_is_html(client: httpx.Client) -> None:
    # Given a running dev stack
    # When the Swagger UI is fetched
    response = client.get("/v1/docs")

    # Then it is an HTML page
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


# --- what API Gateway itself answers ---------------------------------------------------------------


def test_unknown_route_is_a_404_problem(client: httpx.Client) -> None:
    # Given a path no route has
    # When it is requested
    response = client.get("/v1/no/such/thing")

    # Then it is a 404 problem
    assert response.status_code == 404
    assert problem_of(response)["type"] == "urn:fleetlink:problem:no-such-route"


def test_wrong_method_is_a_405_problem_with_allow(client: httpx.Client) -> None:
    # Given a path that only has GET
    # When it is DELETEd
    response = client.delete("/v1/health")

    # Then it is a 405 problem naming what is allowed
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert problem_of(response)["status"] == 405


def test_body_over_the_lambda_payload_limit_is_413(client: httpx.Client, dev_server: DevServer) -> None:
    # Given a body over Lambda's 6 MiB request limit
    body = b"x" * (6 * 1024 * 1024 + 1)

    # When it is posted
    response = client.post("/v1/registration-tokens", content=body, headers=operator(dev_server))

    # Then the server refuses it with a problem
    assert response.status_code == 413
    assert problem_of(response)["type"].endswith("payload-too-large")


# --- operators -------------------------------------------------------------------------------------


def test_operator_route_without_token_is_401(client: httpx.Client) -> None:
    # Given no operator token
    # When agents are listed
    response = client.get("/v1/agents")

    # Then it is a 401 problem
    assert response.status_code == 401
    assert problem_of(response)["type"].endswith("operator-token-invalid")


def test_operator_mints_a_registration_token(client: httpx.Client, dev_server: DevServer) -> None:
    # Given the operator token
    # When a registration token is minted
    response = client.post("/v1/registration-tokens", json={"max_uses": 5}, headers=operator(dev_server))

    # Then it is shown once, with its limits
    assert response.status_code == 201
    assert response.json()["token"].startswith("tok_")
    assert response.json()["max_uses"] == 5


# --- agents ----------------------------------------------------------------------------------------


def test_agent_registers_with_a_token_and_its_key(client: httpx.Client, dev_server: DevServer) -> None:
    # Given a registration token and a new key
    agent = Agent.new()
    url, headers, body = register_request(dev_server, agent, mint_token(client, dev_server))

    # When the agent registers, signed with keyid = its fingerprint
    response = client.post(url, headers=headers, content=body)

    # Then it gets an agent id
    assert response.status_code == 201, response.text
    assert response.json()["agent_id"].startswith("agt_")


def test_signed_heartbeat_is_accepted(client: httpx.Client, dev_server: DevServer) -> None:
    # Given a registered agent
    agent = registered(client, dev_server)
    url, headers, body = heartbeat_request(dev_server, agent)

    # When it heartbeats, signed with keyid = its agent id
    response = client.post(url, headers=headers, content=body)

    # Then the server acknowledges it
    assert response.status_code == 200, response.text
    assert "heartbeat_interval_s" in response.json()


def test_operator_sees_a_heartbeating_agent_online_with_its_history(
    client: httpx.Client, dev_server: DevServer
) -> None:
    # Given a registered agent that heartbeated
    agent = registered(client, dev_server)
    url, headers, body = heartbeat_request(dev_server, agent)
    assert client.post(url, headers=headers, content=body).status_code == 200

    # When the operator looks it up
    response = client.get(f"/v1/agents/{agent.agent_id}", headers=operator(dev_server))

    # Then it is online, with its registration in its history
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["liveness"] == "online"
    assert [event["event"] for event in detail["registration_history"]] == ["register"]


def test_replayed_heartbeat_is_401(client: httpx.Client, dev_server: DevServer) -> None:
    # Given a registered agent's signed heartbeat, sent once
    agent = registered(client, dev_server)
    url, headers, body = heartbeat_request(dev_server, agent)
    assert client.post(url, headers=headers, content=body).status_code == 200

    # When the exact same request is sent again
    replay = client.post(url, headers=headers, content=body)

    # Then it is refused as a replay
    assert replay.status_code == 401
    assert problem_of(replay)["type"].endswith(":unauthenticated")  # why (a replay) is only logged


def test_heartbeat_body_over_1_mib_is_413(client: httpx.Client, dev_server: DevServer) -> None:
    # Given a registered agent and a heartbeat body over the 1 MiB limit
    agent = registered(client, dev_server)
    padding = "x" * (1024 * 1024)
    url, headers, body = signed(
        dev_server,
        agent,
        f"/v1/agents/{agent.agent_id}/heartbeat",
        {"status": padding},
        key_id=agent.agent_id,
    )

    # When it is sent
    response = client.post(url, headers=headers, content=body)

    # Then the function refuses it before reading it
    assert response.status_code == 413
    assert problem_of(response)["type"].endswith("payload-too-large")


# --- the process -----------------------------------------------------------------------------------


def test_ctrl_c_stops_the_dev_server_with_exit_code_0() -> None:
    # Given a second dev server, serving
    dev = start_dev_process()

    # When it gets SIGINT
    code = dev.interrupt()

    # Then it stops cleanly, saying so
    assert code == 0, dev.output()
    assert "fleetlink dev stopped" in "".join(dev.stdout)


# --- the schedules, in process ---------------------------------------------------------------------


@pytest.fixture
def stack() -> Iterator[DevStack]:
    """A dev stack in this process, its timer off: the tests drive the schedule themselves."""
    with DevStack(port=0, table_name="fleetlink-schedule", cleanup_every_s=0, access_log=None) as running:
        yield running


def put(stack: DevStack, pk: str, ttl: int | None) -> None:
    import boto3

    item: dict[str, Any] = {"pk": {"S": pk}, "sk": {"S": "#"}}
    if ttl is not None:
        item["ttl"] = {"N": str(ttl)}
    boto3.client("dynamodb", region_name="us-east-1").put_item(TableName=stack.table_name, Item=item)


def keys(stack: DevStack) -> set[str]:
    import boto3

    client = boto3.client("dynamodb", region_name="us-east-1")
    found = set()
    for pk in ("past", "future", "never"):
        response = client.get_item(TableName=stack.table_name, Key={"pk": {"S": pk}, "sk": {"S": "#"}})
        if "Item" in response:
            found.add(pk)
    return found


def test_ttl_expiry_deletes_only_items_whose_ttl_passed(stack: DevStack) -> None:
    # Given items whose TTL passed, is to come, and is absent
    now_s = int(time.time())
    put(stack, "past", now_s - 1)
    put(stack, "future", now_s + 3600)
    put(stack, "never", None)

    # When the dev stack plays DynamoDB's TTL process
    deleted = stack.expire_ttl_items(now_s=now_s)

    # Then only the expired item is gone
    assert deleted == 1
    assert keys(stack) == {"future", "never"}


def add_cleanup_duty(monkeypatch: pytest.MonkeyPatch, duty: Duty) -> None:
    cleanup = FUNCTIONS["cleanup"]
    monkeypatch.setitem(FUNCTIONS, "cleanup", replace(cleanup, duties=(*cleanup.duties, duty)))


def test_a_scheduled_round_runs_the_cleanup_duties(stack: DevStack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a cleanup duty
    ran: list[str] = []

    def probe(deps: Deps) -> int:
        ran.append(deps.settings.table_name)
        return 0

    add_cleanup_duty(monkeypatch, Duty("e2e-probe", 1, probe, "records that it ran"))

    # When one scheduled round runs
    stack.tick()

    # Then the cleanup function ran it against the stack's table
    assert ran == ["fleetlink-schedule"]


def test_the_timer_runs_scheduled_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a cleanup duty that signals when it runs
    ran = threading.Event()

    def probe(deps: Deps) -> int:
        ran.set()
        return 0

    add_cleanup_duty(monkeypatch, Duty("e2e-probe", 1, probe, "records that it ran"))

    # When a dev stack runs with a short schedule
    with DevStack(port=0, table_name="fleetlink-timer", cleanup_every_s=0.05, access_log=None):
        fired = ran.wait(timeout=30)  # a guard against hanging, not a speed requirement

    # Then the timer invoked the cleanup function
    assert fired


def test_a_round_logs_only_when_it_did_something(
    stack: DevStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a cleanup duty that handles nothing, then one item
    handled = iter([0, 1])
    add_cleanup_duty(monkeypatch, Duty("e2e-count", 1, lambda deps: next(handled), "counts"))

    # When an idle round runs / Then nothing is logged
    stack.tick()
    assert "cleanup done" not in caplog.messages

    # When a round handles an item / Then the function's log line says so
    stack.tick()
    assert "cleanup done" in caplog.messages
