"""What the benchmarks share: the local stack on moto, signed events, agents, statistics, output.

Every benchmark compares against a baseline measured in the same run and prints ratios with the
goal beside them; nothing here passes or fails.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = ROOT / "functions"
PYTHON = sys.executable
TABLE = "fleetlink"
OPERATOR_TOKEN = "bench-operator-token"
#: Where the events say the client sent the request (the signature covers it).
DOMAIN = "127.0.0.1:8080"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def bench_env() -> dict[str, str]:
    """Environment of the handlers under benchmark: moto's fake AWS, local operator token auth."""
    from fleetlink.local.moto_backend import FAKE_AWS_ENV

    return {
        **FAKE_AWS_ENV,
        "TABLE_NAME": TABLE,
        "FLEETLINK_OPERATOR_AUTH": "token",
        "FLEETLINK_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "POWERTOOLS_SERVICE_NAME": "fleetlink",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def handler_path(function: str) -> Path:
    return FUNCTIONS_DIR / function / "handler.py"


def load_handler_module(function: str) -> ModuleType:
    """Import ``functions/<function>/handler.py`` by path, as Lambda does."""
    spec = importlib.util.spec_from_file_location(f"bench_{function}_handler", handler_path(function))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- events and signing --------------------------------------------------------------------------


def http_event(
    method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None, query: str = ""
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, built by the dev stack's own event builder."""
    from fleetlink.local.events import http_api_event

    all_headers = {"content-type": "application/json", **(headers or {})} if body else dict(headers or {})
    return http_api_event(method, path, domain_name=DOMAIN, raw_query=query, headers=all_headers, body=body)


def url_of(path: str, query: str = "") -> str:
    """The URL the client signs: what the server rebuilds from the event (``x-forwarded-proto: http``)."""
    return f"http://{DOMAIN}{path}" + (f"?{query}" if query else "")


@dataclass
class BenchAgent:
    """A node: its signing key and hardware; ``agent_id`` once registered."""

    index: int
    key: Any = None
    agent_id: str | None = None
    fingerprint: str = ""
    #: The last heartbeat sequence signed (the fleetlink agent keeps it in agent.db).
    sequence: int = 0

    def __post_init__(self) -> None:
        from fleetlink.auth.keys import generate_private_key
        from fleetlink.core.entities import KeyAlg

        self.key = generate_private_key(KeyAlg.ED25519)
        self.fingerprint = f"bench-fingerprint-{self.index:06d}-0123456789abcdef"

    def registration_body(self) -> bytes:
        from fleetlink.auth.keys import public_key_pem

        return json.dumps(
            {
                "fingerprint": self.fingerprint,
                "public_key": public_key_pem(self.key),
                "key_alg": "ed25519",
                "hardware": {
                    "machine_id": f"machine-{self.index:06d}",
                    "hostname": f"node-{self.index:04d}.example.internal",
                    "ip_address": f"10.0.{self.index // 250}.{self.index % 250 + 1}",
                    "mac_address": f"02:00:00:00:{self.index // 256:02x}:{self.index % 256:02x}",
                    "os": "linux 6.8",
                    "arch": "x86_64",
                },
                "tags": {"role": "web"},
                "capabilities": ["shell", "tunnel"],
                "agent_version": "0.1.0",
            }
        ).encode()

    def signed_event(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        key_id: str,
        headers: dict[str, str] | None = None,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        """An event signed by this agent's key (a fresh random nonce unless ``nonce`` is given)."""
        from fleetlink.auth.signatures import sign_request
        from fleetlink.core.entities import KeyAlg

        extra = dict(headers or {})
        if body:
            extra["content-type"] = "application/json"
        signature = sign_request(
            method,
            url_of(path),
            extra,
            body or None,
            private_key=self.key,
            key_id=key_id,
            key_alg=KeyAlg.ED25519,
            nonce=nonce,
        )
        return http_event(
            method, path, body=body, headers={**extra, **{k.lower(): v for k, v in signature.items()}}
        )

    def heartbeat_event(self, beat: int = 0, *, sequenced: bool = True) -> dict[str, Any]:
        """A heartbeat as the fleetlink agent signs it (``seq:<n>``, the next sequence), or with a
        random nonce as a generic RFC 9421 client does (``sequenced=False``)."""
        from fleetlink.auth.sequence import sequence_nonce

        assert self.agent_id is not None
        body = json.dumps({"status": "ok", "metrics": {"cpu": 0.25 + (beat % 50) / 100, "mem": 0.5}}).encode()
        nonce = None
        if sequenced:
            self.sequence += 1
            nonce = sequence_nonce(self.sequence)
        path = f"/v1/agents/{self.agent_id}/heartbeat"
        return self.signed_event("POST", path, body, key_id=self.agent_id, nonce=nonce)

    def registration_event(self, token: str | None) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        key_id = self.agent_id or self.fingerprint  # a registered agent re-registers by its key
        return self.signed_event(
            "POST", "/v1/agents/register", self.registration_body(), key_id=key_id, headers=headers
        )


# --- results other scripts read (bench/cost_model.py) ------------------------------------------

RESULTS_DIR = ROOT / "bench" / "results"


def save_results(name: str, figures: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (what bench/cost_model.py reads) and return its path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"\n  figures written to {path.relative_to(ROOT)}")
    return path


# --- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    """moto DynamoDB in this process plus the real Lambda handlers (``functions/*/handler.py``)."""

    client: Any
    handlers: dict[str, Handler] = field(default_factory=dict)
    contexts: dict[str, Any] = field(default_factory=dict)

    def handler(self, function: str) -> Handler:
        if function not in self.handlers:
            from fleetlink.local.events import LocalLambdaContext

            self.handlers[function] = load_handler_module(function).lambda_handler
            self.contexts[function] = LocalLambdaContext(function_name=f"fleetlink-{function}")
        return self.handlers[function]

    def invoke(
        self, function: str, event: dict[str, Any], expect: int | Sequence[int] = (200, 201)
    ) -> dict[str, Any]:
        """Run one event through a handler; fail loudly on an unexpected status (a bug to report)."""
        response = self.handler(function)(event, self.contexts[function])
        wanted = (expect,) if isinstance(expect, int) else tuple(expect)
        if response["statusCode"] not in wanted:
            raise RuntimeError(
                f"{function} {event['requestContext']['http']['method']} {event['rawPath']} answered "
                f"{response['statusCode']}: {response.get('body', '')[:500]}"
            )
        return response

    def operator(
        self, function: str, method: str, path: str, body: Any = None, query: str = ""
    ) -> dict[str, Any]:
        """An operator request (bearer operator token); returns the decoded JSON body."""
        raw = json.dumps(body).encode() if body is not None else b""
        event = http_event(
            method, path, body=raw, headers={"authorization": f"Bearer {OPERATOR_TOKEN}"}, query=query
        )
        result: dict[str, Any] = json.loads(self.invoke(function, event)["body"])
        return result

    def mint_token(self, max_uses: int = 1) -> str:
        token: str = self.operator("registration", "POST", "/v1/registration-tokens", {"max_uses": max_uses})[
            "token"
        ]
        return token

    def register(self, agent: BenchAgent, token: str | None) -> str:
        response = self.invoke("registration", agent.registration_event(token))
        agent.agent_id = json.loads(response["body"])["agent_id"]
        return agent.agent_id


@contextmanager
def local_stack() -> Iterator[Stack]:
    """Start moto with the table, point fresh handler deps at it; yield the stack."""
    os.environ.update(bench_env())
    from fleetlink.api.deps import get_deps, set_deps
    from fleetlink.local.moto_backend import local_dynamodb

    with local_dynamodb(TABLE) as client:
        set_deps(None)
        get_deps()  # binds the models to the table before anything meters their clients
        yield Stack(client)
        set_deps(None)


# --- statistics and output -------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio_text(value: float, baseline: float, goal: str) -> str:
    return f"ratio {value / baseline:5.2f}  (goal {goal})"


def header(title: str) -> None:
    print(f"\n{title}\n{'-' * len(title)}")


def fresh_python(
    code: str, *, extra_args: Sequence[str] = (), stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter (same venv, cwd = repo root); raise with its stderr if it fails."""
    result = subprocess.run(
        [PYTHON, *extra_args, "-c", code],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **bench_env()},
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"subprocess failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


# --- the DynamoDB requests a handler makes -------------------------------------------------------


def pynamodb_clients() -> list[Any]:
    """The botocore clients of the fleetlink models (they share the table's one)."""
    from fleetlink.store.base import table_client

    return [table_client()]


def capture_dynamodb(action: Callable[[], Any]) -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
    """Run ``action``; return its result and the DynamoDB requests (operation, parameters) it made."""
    import copy

    seen: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        seen.append((model.name, copy.deepcopy(params)))

    clients = pynamodb_clients()
    for client in clients:
        client.meta.events.register("before-parameter-build.dynamodb", record)
    try:
        result = action()
    finally:
        for client in clients:
            client.meta.events.unregister("before-parameter-build.dynamodb", record)
    return result, seen
