"""Identity and trust over real HTTP on `fleetlink dev`, tried as an attacker would."""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from fleetlink.auth.key_proof import sign_key_proof
from fleetlink.auth.keys import PrivateKey, generate_private_key, public_key_pem
from fleetlink.auth.signatures import sign_request
from fleetlink.core.entities import KeyAlg
from tests.e2e.conftest import DevServer

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

GENERIC_401 = {
    "type": "urn:fleetlink:problem:unauthenticated",
    "title": "Authentication failed",
    "status": 401,
    "detail": "the request could not be authenticated",
}
#: Headers that differ between any two responses (when, and which request).
PER_RESPONSE_HEADERS = {"date", "apigw-requestid", "x-amzn-requestid"}


@dataclass
class Host:
    """A machine (hardware) and one state dir's key on it."""

    machine_id: str
    key: PrivateKey = field(default_factory=lambda: generate_private_key(KeyAlg.ED25519))
    agent_id: str = ""

    @property
    def fingerprint(self) -> str:
        return "fp-" + self.machine_id

    def body(self, **changes: Any) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "public_key": public_key_pem(self.key),
            "key_alg": "ed25519",
            "hardware": {
                "machine_id": self.machine_id,
                "hostname": "idn-host",
                "os": "linux",
                "arch": "x86_64",
            },
            **changes,
        }

    def twin(self) -> Host:
        """Another key presenting this machine's hardware (a copied disk, or a second state dir)."""
        return Host(self.machine_id)


class Http:
    def __init__(self, client: httpx.Client, server: DevServer) -> None:
        self.client, self.server = client, server
        self.operator = {"Authorization": f"Bearer {server.operator_token}"}

    def post_signed(
        self, host: Host, path: str, payload: Any, *, key_id: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        url = f"{self.server.url}{path}"
        body = json.dumps(payload).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        all_headers |= sign_request(
            "POST", url, all_headers, body, private_key=host.key, key_id=key_id, key_alg=KeyAlg.ED25519
        )
        return self.client.post(url, headers=all_headers, content=body)

    def token(self, **body: Any) -> str:
        response = self.client.post(
            "/v1/registration-tokens", json={"max_uses": 10, **body}, headers=self.operator
        )
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    def register(self, host: Host, token: str | None, **changes: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        key_id = host.agent_id or host.fingerprint
        response = self.post_signed(
            host, "/v1/agents/register", host.body(**changes), key_id=key_id, headers=headers
        )
        if response.status_code == 201:
            host.agent_id = response.json()["agent_id"]
        return response

    def heartbeat(self, host: Host, agent_id: str | None = None) -> httpx.Response:
        agent_id = agent_id or host.agent_id
        return self.post_signed(host, f"/v1/agents/{agent_id}/heartbeat", {"status": "ok"}, key_id=agent_id)

    def rotate(self, host: Host, new: Host, *, signer: Host | None = None) -> httpx.Response:
        created = int(time.time())
        body = {
            "public_key": public_key_pem(new.key),
            "key_alg": "ed25519",
            "created": created,
            "proof": sign_key_proof(new.key, host.agent_id, KeyAlg.ED25519, created),
        }
        return self.post_signed(
            signer or host, f"/v1/agents/{host.agent_id}/keys", body, key_id=host.agent_id
        )

    def agent(self, agent_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/agents/{agent_id}", headers=self.operator)
        assert response.status_code == 200, response.text
        shown: dict[str, Any] = response.json()
        return shown


@pytest.fixture
def http(client: httpx.Client, dev_server: DevServer) -> Http:
    return Http(client, dev_server)


_hosts = iter(range(10**6))


def new_host() -> Host:
    return Host(f"idn-{time.time_ns()}-{next(_hosts)}")


@pytest.fixture
def victim(http: Http) -> Host:
    host = new_host()
    assert http.register(host, http.token(tags={"ring": "prod"})).status_code == 201
    assert http.heartbeat(host).status_code == 200
    return host


def assert_generic_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == GENERIC_401


def test_token_of_another_ring_with_copied_hardware_makes_a_new_agent(http: Http, victim: Host) -> None:
    # Given an attacker with a dev-ring token, the victim's hardware and fingerprint, its own key
    attacker = victim.twin()
    # When it registers
    response = http.register(attacker, http.token(tags={"ring": "dev"}))
    # Then a new dev agent that resembles the victim; the victim keeps its id, tags and heartbeats
    assert response.status_code == 201, response.text
    assert attacker.agent_id != victim.agent_id
    shown = http.agent(attacker.agent_id)
    assert shown["tags"] == {"ring": "dev"}
    assert shown["registration_history"][0]["resembles"]["agent_id"] == victim.agent_id
    assert http.heartbeat(victim).status_code == 200
    assert http.agent(victim.agent_id)["tags"] == {"ring": "prod"}


def test_copied_hardware_without_a_token_is_refused(http: Http, victim: Host) -> None:
    assert_generic_401(http.register(victim.twin(), None))
    assert http.heartbeat(victim).status_code == 200


def test_rotation_by_the_current_key_keeps_the_id_and_by_the_new_key_alone_is_refused(
    http: Http, victim: Host
) -> None:
    # Given an attacker's key proving itself but signing as the victim: refused
    attacker = new_host()
    assert_generic_401(http.rotate(victim, attacker, signer=attacker))
    # When the victim rotates to its own new key, signed by the current one
    new = Host(victim.machine_id)
    response = http.rotate(victim, new)
    # Then same id; the new key signs, the old no longer does
    assert response.status_code == 200, response.text
    assert http.heartbeat(new, victim.agent_id).status_code == 200
    assert_generic_401(http.heartbeat(victim))


def test_recovery_token_works_once_for_that_agent_only(http: Http, victim: Host) -> None:
    # Given an operator's recovery token for the victim's id
    minted = http.client.post(
        f"/v1/agents/{victim.agent_id}/recovery-token", json={"ttl_seconds": 300}, headers=http.operator
    )
    assert minted.status_code == 201, minted.text
    token = minted.json()["token"]
    # When a new key registers with it, then a second one tries again
    replacement, second = victim.twin(), victim.twin()
    first = http.register(replacement, token)
    # Then the first takes over the id (tags kept), once
    assert (first.status_code, first.json()["agent_id"], first.json()["event"]) == (
        201,
        victim.agent_id,
        "recover",
    )
    assert http.agent(victim.agent_id)["tags"] == {"ring": "prod"}
    assert http.heartbeat(replacement).status_code == 200
    # and a second use, by the holder of the genuine secret, is told the token is used up
    again = http.register(second, token)
    assert again.status_code == 401, again.text
    assert again.json()["type"] == "urn:fleetlink:problem:registration-token-used-up", again.text


def test_token_tags_win(http: Http) -> None:
    response = http.register(new_host(), http.token(tags={"ring": "dev"}), tags={"ring": "prod"})
    assert response.status_code == 422
    assert response.json()["type"].endswith(":token-tag-conflict")
    assert "ring" in response.json()["detail"]


def test_tokens_listed_without_secrets_and_revoked_mid_race(http: Http) -> None:
    # Given a roomy token, listed without its secret
    token = http.token(max_uses=100)
    token_id, secret = token.split(".")
    listed = http.client.get("/v1/registration-tokens", params={"limit": 100}, headers=http.operator)
    assert token_id in listed.text
    assert secret not in listed.text
    # When registrations race a revoke
    revoked_at = threading.Event()
    outcomes: list[tuple[bool, int]] = []

    def register_one(_: int) -> None:
        started_after = revoked_at.is_set()
        outcomes.append((started_after, http.register(new_host(), token).status_code))

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(register_one, i) for i in range(12)]
        revoke = http.client.delete(f"/v1/registration-tokens/{token_id}", headers=http.operator)
        revoked_at.set()
        futures += [pool.submit(register_one, i) for i in range(8)]
        for future in futures:
            future.result()
    # Then none sent after the revoke committed succeeds, and uses match the agents registered
    assert revoke.status_code == 200
    assert {status for after, status in outcomes if after} == {401}
    used = [
        t
        for t in http.client.get(
            "/v1/registration-tokens", params={"limit": 100}, headers=http.operator
        ).json()["items"]
        if t["token_id"] == token_id
    ]
    assert used[0]["uses"] == sum(1 for _, status in outcomes if status == 201)


def test_history_cannot_be_flushed(http: Http, victim: Host) -> None:
    for _ in range(25):
        assert_generic_401(http.register(victim.twin(), None))
    assert [e["event"] for e in http.agent(victim.agent_id)["registration_history"]] == ["register"]


def _comparable(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k.lower() not in PER_RESPONSE_HEADERS}
    return response.status_code, headers, response.content


def test_generic_401_is_byte_identical_for_unknown_and_real_agent_ids(http: Http, victim: Host) -> None:
    stranger = new_host()
    real = http.heartbeat(stranger, victim.agent_id)
    unknown = http.heartbeat(stranger, "agt_01J0000000000000000000000A")
    assert_generic_401(real)
    assert _comparable(real) == _comparable(unknown)


def test_query_string_outside_the_covered_components_is_a_401(http: Http, victim: Host) -> None:
    # Given a heartbeat signed over @path and @authority only, sent with ?admin=1
    url = f"{http.server.url}/v1/agents/{victim.agent_id}/heartbeat?admin=1"
    message = SimpleNamespace(method="POST", url=url, headers={"Host": urlsplit(url).netloc})
    HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={victim.agent_id: victim.key}),
    ).sign(
        message,
        key_id=victim.agent_id,
        created=datetime.datetime.now(datetime.UTC),
        nonce=f"q-{time.time_ns()}",
        covered_component_ids=("@method", "@path", "@authority", "content-digest"),
        body=b"{}",
    )
    headers = {k: v for k, v in message.headers.items() if k != "Host"} | {"Content-Type": "application/json"}
    # When sent / Then the generic 401
    assert_generic_401(http.client.post(url, headers=headers, content=b"{}"))


def test_forged_cursor_is_a_400(http: Http) -> None:
    position = {"s": 0, "k": {"pk": {"S": "AGENT#x"}, "sk": {"S": "x"}, "extra": {"S": "1"}}}
    forged = (
        base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")
        + ".AAAAAAAAAAAAAAAAAAAAAA"
    )
    for path in ("/v1/agents", "/v1/tasks"):
        response = http.client.get(path, params={"cursor": forged}, headers=http.operator)
        assert response.status_code == 400, response.text
        assert response.json()["type"].endswith(":invalid-cursor")


def test_unsigned_malformed_5_mib_body_is_a_401(http: Http) -> None:
    body = b"{" * (5 * 1024 * 1024)
    response = http.client.post(
        "/v1/agents/agt_01J0000000000000000000000A/heartbeat",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert_generic_401(response)
