"""Write a sample API Gateway HTTP API (payload 2.0) request for every route, as a deployed stack
receives it, plus the EventBridge event of the cleanup schedule: `python events/generate.py`.

Operator routes carry the IAM authorizer context API Gateway adds after checking SigV4; agent
routes are signed per RFC 9421 by a throwaway key (their `created` is in the past, so replaying
a sample against a live stack fails as it should).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fleetlink.api.document import openapi_document, route_table
from fleetlink.api.functions import scheduled_functions
from fleetlink.auth.keys import generate_private_key, public_key_pem
from fleetlink.auth.signatures import sign_request
from fleetlink.core.entities import KeyAlg
from fleetlink.local.events import http_api_event, scheduled_event

HERE = Path(__file__).parent
DOMAIN = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
AT_S = 1_767_225_600  # 2026-01-01T00:00:00Z
AGENT_ID = "agt_01KDXRYP0000000000000000AB"
PATH_VALUES = {
    "agent_id": AGENT_ID,
    "task_id": "tsk_01KDXRYP0000000000000000CD",
    "execution_id": "exe_01KDXRYP0000000000000000EF",
    "token_id": "tok_01KDXRYP000000000000000TOK",
    "tunnel_id": "tun_01KDXRYP0000000000000000GH",
    "name": "swagger-ui.css",
    "collection": "inventory",
    "attempt": "1",
    "version": "0.2.0",
    "platform": "linux-x86_64",
    "stream": "stdout",
}
_RECORD = {
    "record_id": "rec_01KDXRYP0000000000000000GH",
    "collection": "inventory",
    "key": "disks/sda",
    "hlc": "1767225599000-0000",
    "value": {"size_gb": 512, "smart": "ok"},
}
FINGERPRINT = "3f1c9ad0e6b1b2d4c0aa7d5e2f9b8c7a6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a"
IAM = {
    "accessKey": "ASIAEXAMPLEEXAMPLE00",
    "accountId": "111122223333",
    "callerId": "AROAEXAMPLEEXAMPLE000:alice",
    "cognitoIdentity": None,
    "principalOrgId": None,
    "userArn": "arn:aws:sts::111122223333:assumed-role/FleetOperators/alice",
    "userId": "AROAEXAMPLEEXAMPLE000:alice",
}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/registration-tokens"): {"ttl_seconds": 3600, "max_uses": 10, "tags": {"role": "web"}},
    ("POST", "/v1/agents/{agent_id}/heartbeat"): {
        "status": "ok",
        "metrics": {"load1": 0.42, "mem_used_pct": 61.5},
    },
    ("POST", "/v1/agents/{agent_id}/keys"): {
        "public_key": "-----BEGIN PUBLIC KEY-----\n"
        "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
        "-----END PUBLIC KEY-----\n",
        "key_alg": "ed25519",
        "created": AT_S,
        "proof": "c2lnbmF0dXJlLWJ5LXRoZS1uZXcta2V5LW92ZXItdGhlLWtleS1wcm9vZi1zdHJpbmc",
    },
    ("POST", "/v1/agents/{agent_id}/recovery-token"): {"ttl_seconds": 900},
    ("PUT", "/v1/agents/{agent_id}/tags"): {"tags": {"role": "web", "zone": "eu-west-1a"}},
    ("POST", "/v1/tasks"): {
        "type": "shell",
        "command": "uptime",
        "targets": {"tags": {"role": "web"}},
        "priority": 10,
        "timeout_seconds": 30,
        "max_retries": 1,
    },
    ("POST", "/v1/agents/{agent_id}/executions/claim"): {"max": 2, "running_executions": []},
    ("POST", "/v1/executions/{execution_id}/result"): {
        "attempt": 1,
        "status": "succeeded",
        "exit_code": 0,
        "output": " 10:00:00 up 3 days,  load average: 0.10, 0.05, 0.01\n",
        "started_at": 1_767_225_590_000,
        "finished_at": 1_767_225_590_120,
    },
    ("POST", "/v1/agents/{agent_id}/tunnels"): {
        "provider": "self_hosted",
        "name": "web-ui",
        "mode": "http",
        "local_target": "127.0.0.1:8080",
        "enabled": True,
        "routes": [{"path_prefix": "/api", "local_target": "127.0.0.1:8081", "priority": 10}],
    },
    ("PATCH", "/v1/tunnels/{tunnel_id}"): {"enabled": False},
    ("PUT", "/v1/tunnels/{tunnel_id}/status"): {"health": "up", "public_url": "https://web-ui.example.com"},
    ("POST", "/v1/tunnels/{tunnel_id}/events"): {
        "events": [
            {
                "level": "info",
                "event_type": "tunnel_start",
                "message": "self_hosted listening on 127.0.0.1:18080",
                "created_at": 1_767_225_590_000,
            }
        ]
    },
}
BODIES |= {
    ("POST", "/v1/relay/immediate"): _RECORD,
    ("POST", "/v1/relay/batch"): {"records": [_RECORD]},
    ("POST", "/v1/relay/query"): {"collection": "inventory", "key_prefix": "disks/", "limit": 50},
    ("POST", "/v1/relay/records/query"): {"collection": "inventory", "updated_since": 1_767_225_000_000},
    ("PUT", "/v1/relay/collections/{collection}"): {"readers": {"tag": {"role": "web"}}},
    ("POST", "/v1/executions/{execution_id}/output"): {
        "attempt": 1,
        "seq": 1,
        "parts": [{"stream": "stdout", "data": "Reading package lists...\n"}],
    },
    ("POST", "/v1/executions/{execution_id}/output-uploads"): {"attempt": 1},
}
BODIES |= {
    ("PUT", "/v1/releases/key"): {
        "public_key": "-----BEGIN PUBLIC KEY-----\n"
        "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
        "-----END PUBLIC KEY-----\n"
    },
    ("POST", "/v1/agents/{agent_id}/version"): {
        "event": "upgrade",
        "version": "0.2.0",
        "from_version": "0.1.0",
    },
    ("POST", "/v1/releases"): {
        "version": "0.2.0",
        "platform": "linux-x86_64",
        "sha256": "2f943024eb1c1ecf5ff1eda13467158ec639fd8fbf4b4799f21c68863f3b0b5b",
        "size": 37121566,
        "signature": "A" * 86 + "==",
    },
}
QUERIES = {
    ("GET", "/v1/agents"): "status=online&tag=role%3Aweb&limit=50",
    ("GET", "/v1/agent/releases/{version}"): "platform=linux-x86_64",
    ("GET", "/v1/releases"): "platform=linux-x86_64",
    ("GET", "/v1/executions/{execution_id}/output"): "after=0",
    ("GET", "/v1/agents/{agent_id}/executions"): "limit=20",
    ("GET", "/v1/executions/{execution_id}/output-objects/{stream}"): "attempt=1",
}


def _register_body(alg_key: Any) -> dict[str, Any]:
    return {
        "fingerprint": FINGERPRINT,
        "public_key": public_key_pem(alg_key),
        "key_alg": "ed25519",
        "hardware": {
            "machine_id": "4c4c4544004d3510804ab4c04f4e3732",
            "hostname": "web-07.eu-west-1.internal",
            "ip_address": "10.20.3.17",
            "mac_address": "0a:1b:2c:3d:4e:5f",
            "os": "linux",
            "arch": "arm64",
            "cpu_model": "Neoverse-N1",
            "cpu_count": 4,
            "memory_mb": 16384,
        },
        "tags": {"env": "prod"},
        "agent_version": "0.1.0",
    }


def sample(function: str, method: str, path: str, security: list[dict[str, Any]], key: Any) -> dict[str, Any]:
    """The event API Gateway sends the function for one request on this route."""
    raw_path = path.format(**PATH_VALUES)
    body = _register_body(key) if path == "/v1/agents/register" else BODIES.get((method, path))
    raw = json.dumps(body).encode() if body is not None else b""
    query = QUERIES.get((method, path), "")
    headers = {"user-agent": "fleetlink-agent/0.1.0", "accept": "application/json"}
    if raw:
        headers["content-type"] = "application/json"
    signed = any("agentSignature" in requirement for requirement in security)
    if not signed:  # an operator route (IAM) or a public one
        if any("operator" in requirement for requirement in security):
            headers["authorization"] = (
                "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEEXAMPLE00/... (checked by API Gateway)"
            )
    else:
        url = f"https://{DOMAIN}{raw_path}"
        key_id = FINGERPRINT if path == "/v1/agents/register" else AGENT_ID
        headers |= sign_request(
            method,
            url,
            headers,
            raw or None,
            private_key=key,
            key_id=key_id,
            key_alg=KeyAlg.ED25519,
            created=AT_S,
        )
        if path == "/v1/agents/register":
            headers["authorization"] = "Bearer tok_01KDXRYP000000000000000TOK.<registration token secret>"
    params = {name: PATH_VALUES[name] for name in re.findall(r"{(\w+)}", path)}
    event = http_api_event(
        method,
        raw_path,
        domain_name=DOMAIN,
        raw_query=query,
        headers=headers,
        body=raw,
        route_key=f"{method} {path}",
        path_parameters=params or None,
        source_ip="203.0.113.24",
        now_ms=AT_S * 1000,
    )
    event["headers"]["x-forwarded-proto"] = "https"
    event["headers"]["x-forwarded-port"] = "443"
    event["headers"]["host"] = DOMAIN
    event["requestContext"].update(accountId="111122223333", apiId="a1b2c3d4e5")
    if "authorization" in headers and headers["authorization"].startswith("AWS4"):
        event["requestContext"]["authorizer"] = {"iam": IAM}
    return event


def file_name(function: str, method: str, path: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", re.sub(r"{\w+}", "id", path.removeprefix("/v1/")).lower()).strip("-")
    return f"{function}.{method.lower()}.{slug}.json"


def main() -> None:
    key = generate_private_key(KeyAlg.ED25519)
    paths = openapi_document()["paths"]
    for function, method, path in route_table():
        security = paths[path][method.lower()].get("security", [])
        target = HERE / "http" / file_name(function, method, path)
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps(sample(function, method, path, security, key), indent=2) + "\n")
    schedule = scheduled_event(None) | {
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "time": "2026-01-01T00:00:00Z",
    }
    (HERE / "scheduled").mkdir(exist_ok=True)
    for spec in scheduled_functions():
        (HERE / "scheduled" / f"{spec.name}.json").write_text(json.dumps(schedule, indent=2) + "\n")


if __name__ == "__main__":
    main()
