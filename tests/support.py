"""Test support: call the real Lambda handlers in-process with API Gateway v2 events, sign as agents."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext

from fleetlink.api.app import lambda_entry
from fleetlink.api.settings import OperatorToken
from fleetlink.auth.key_proof import sign_key_proof
from fleetlink.auth.keys import PrivateKey, generate_private_key, public_key_pem
from fleetlink.auth.signatures import sign_request
from fleetlink.core.clock import FixedClock
from fleetlink.core.entities import KeyAlg
from fleetlink.core.roles import Role
from fleetlink.local.events import LocalLambdaContext, http_api_event

OPERATOR_TOKEN = "operator-test-token"
#: Named tokens with roles, as ``fleetlink dev --operator NAME:ROLE`` configures them: {role: (name, token)}.
ROLE_TOKENS = {"viewer": ("vera", "viewer-test-token"), "operator": ("otto", "operator-role-test-token")}
DOMAIN = "api.fleetlink.test"
NOW_MS = 1_800_000_000_000


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 body, checked to be one."""
        assert self.headers.get("Content-Type") == "application/problem+json", self.headers
        problem: dict[str, Any] = self.json
        assert {"type", "title", "status", "detail"} <= problem.keys()
        assert problem["status"] == self.status
        return problem

    def problem_code(self) -> str:
        return str(self.problem()["type"]).rsplit(":", 1)[-1]


@dataclass
class Machine:
    """A machine with its own key and hardware, as an agent would present itself."""

    name: str
    alg: KeyAlg = KeyAlg.ED25519
    machine_id: str = ""
    key: PrivateKey = field(init=False)
    agent_id: str | None = None

    def __post_init__(self) -> None:
        self.key = (
            generate_private_key(self.alg, rsa_bits=2048)
            if self.alg is KeyAlg.RSA_PSS_SHA512
            else (generate_private_key(self.alg))
        )
        self.machine_id = self.machine_id or f"machine-{self.name}"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.machine_id.encode()).hexdigest()

    def hardware(self, **changes: Any) -> dict[str, Any]:
        return {
            "machine_id": self.machine_id,
            "hostname": f"{self.name}.example.internal",
            "ip_address": "10.0.0.7",
            "mac_address": "02:00:00:00:00:07",
            "os": "linux",
            "arch": "arm64",
            **changes,
        }

    def register_body(self, **changes: Any) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "public_key": public_key_pem(self.key),
            "key_alg": self.alg.value,
            "hardware": self.hardware(),
            "tags": {"env": "test"},
            "agent_version": "0.1.0",
            **changes,
        }


class Api:
    """The deployed API as API Gateway would drive it: one Lambda handler per route group."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        #: Built on a function's first call, as a container would: a test loads only what it calls.
        self._handlers: dict[str, Any] = {}

    def call(
        self,
        function: str,
        method: str,
        path: str,
        *,
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        headers: dict[str, str] | None = None,
        query: str = "",
    ) -> Reply:
        raw = _raw(body)
        event = http_api_event(
            method, path, domain_name=DOMAIN, raw_query=query, headers=list((headers or {}).items()), body=raw
        )
        event["headers"]["x-forwarded-proto"] = "https"
        context = cast(LambdaContext, LocalLambdaContext(function_name=function))
        if function not in self._handlers:
            self._handlers[function] = lambda_entry(function)
        response = self._handlers[function](event, context)
        return Reply(response["statusCode"], response.get("headers") or {}, response.get("body") or "")

    def operator(
        self,
        function: str,
        method: str,
        path: str,
        body: Any = None,
        query: str = "",
        *,
        role: str | None = None,
    ) -> Reply:
        """As the admin token, or as the named token of ``role``."""
        token = ROLE_TOKENS[role][1] if role is not None else OPERATOR_TOKEN
        return self.call(function, method, path, body=body, query=query, headers=operator_headers(token))

    def signed_headers(
        self,
        agent: Machine,
        method: str,
        path: str,
        body: bytes,
        *,
        key_id: str | None = None,
        created: int | None = None,
        nonce: str | None = None,
        query: str = "",
    ) -> dict[str, str]:
        url = f"https://{DOMAIN}{path}" + (f"?{query}" if query else "")
        headers = {"Content-Type": "application/json"} if body else {}
        return headers | sign_request(
            method,
            url,
            headers,
            body or None,
            private_key=agent.key,
            key_id=key_id or agent.agent_id or agent.fingerprint,
            key_alg=agent.alg,
            created=created if created is not None else self.clock.now_ms() // 1000,
            nonce=nonce,
        )

    def signed(
        self, function: str, agent: Machine, method: str, path: str, body: Any = None, **sign: Any
    ) -> Reply:
        raw = _raw(body)
        return self.call(
            function, method, path, body=raw, headers=self.signed_headers(agent, method, path, raw, **sign)
        )

    def mint_token(self, **body: Any) -> str:
        reply = self.operator("registration", "POST", "/v1/registration-tokens", {"max_uses": 10, **body})
        assert reply.status == 201, reply.body
        token: str = reply.json["token"]
        return token

    def register(
        self,
        agent: Machine,
        token: str | None,
        body: dict[str, Any] | None = None,
        *,
        key_id: str | None = None,
    ) -> Reply:
        """Register (keyid = fingerprint) or, once the machine has an agent id, re-register (keyid = it)."""
        raw = _raw(body or agent.register_body())
        key_id = key_id or agent.agent_id or agent.fingerprint
        headers = self.signed_headers(agent, "POST", "/v1/agents/register", raw, key_id=key_id)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        reply = self.call("registration", "POST", "/v1/agents/register", body=raw, headers=headers)
        if reply.status == 201:
            agent.agent_id = reply.json["agent_id"]
        return reply

    def rotate_key(self, agent: Machine, new: Machine, *, signer: Machine | None = None) -> Reply:
        """Install ``new``'s key on ``agent``'s id: proved by ``new``, signed by ``signer`` (the agent)."""
        assert agent.agent_id is not None
        created = self.clock.now_ms() // 1000
        body = {
            "public_key": public_key_pem(new.key),
            "key_alg": new.alg.value,
            "created": created,
            "proof": sign_key_proof(new.key, agent.agent_id, new.alg, created),
        }
        path = f"/v1/agents/{agent.agent_id}/keys"
        return self.signed("registration", signer or agent, "POST", path, body, key_id=agent.agent_id)

    def recovery_token(self, agent_id: str, **body: Any) -> Reply:
        return self.operator("registration", "POST", f"/v1/agents/{agent_id}/recovery-token", body or None)

    def heartbeat(self, agent: Machine, body: dict[str, Any] | None = None, **sign: Any) -> Reply:
        path = f"/v1/agents/{agent.agent_id}/heartbeat"
        return self.signed(
            "heartbeat", agent, "POST", path, body if body is not None else {"status": "ok"}, **sign
        )


def refusal_reasons(records: list[logging.LogRecord]) -> list[str]:
    """Why authentications were refused, from the handlers' logs (the 401 itself never says)."""
    return [str(getattr(r, "reason", "")) for r in records if r.getMessage() == "authentication refused"]


def assert_generic_401(reply: Reply) -> None:
    """The one answer to every failed authentication on agent routes."""
    assert reply.status == 401, reply.body
    assert reply.json == GENERIC_401, reply.body


GENERIC_401 = {
    "type": "urn:fleetlink:problem:unauthenticated",
    "title": "Authentication failed",
    "status": 401,
    "detail": "the request could not be authenticated",
}


def operator_headers(token: str = OPERATOR_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def role_tokens_setting() -> tuple[OperatorToken, ...]:
    """``Settings.operator_tokens`` of the named test tokens."""
    return tuple(
        OperatorToken(name=name, role=Role(role), sha256=hashlib.sha256(token.encode()).hexdigest())
        for role, (name, token) in ROLE_TOKENS.items()
    )


def _raw(body: bytes | str | dict[str, Any] | list[Any] | None) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()
