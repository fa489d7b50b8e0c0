"""Real Lambda inputs for the dev stack: API Gateway HTTP API (payload 2.0) events, EventBridge
scheduled events, and a Lambda context stand-in."""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

LOCAL_ACCOUNT_ID = "123456789012"  # moto's default account
LOCAL_REGION = "us-east-1"
LOCAL_API_ID = "local"
DEFAULT_ROUTE_KEY = "$default"

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def _header_pairs(headers: Headers) -> list[tuple[str, str]]:
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


def _request_id() -> str:
    """An id shaped like API Gateway's (16 base64 characters), unique per request."""
    return base64.b64encode(os.urandom(10)).decode()


def _query_parameters(raw_query: str) -> dict[str, str]:
    """Decoded query parameters; a repeated name's values are comma-joined, as API Gateway does."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    return params


def http_api_event(
    method: str,
    raw_path: str,
    *,
    domain_name: str,
    raw_query: str = "",
    headers: Headers = (),
    body: bytes = b"",
    route_key: str = DEFAULT_ROUTE_KEY,
    path_parameters: Mapping[str, str] | None = None,
    source_ip: str = "127.0.0.1",
    protocol: str = "HTTP/1.1",
    now_ms: int | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API payload 2.0 event for one request.

    Header names are lower-cased and repeated headers comma-joined; ``cookie`` headers move to
    ``cookies``; ``x-forwarded-proto: http`` says how the client addressed the local server (the
    signature check rebuilds ``@target-uri`` from it). A body that is not UTF-8 goes base64-encoded.
    Optional fields (cookies, query and path parameters, body) are left out when empty, as API
    Gateway does.
    """
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in _header_pairs(headers):
        key = name.lower()
        if key == "cookie":
            cookies += [part.strip() for part in value.split(";") if part.strip()]
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    merged["x-forwarded-proto"] = "http"
    merged.setdefault("x-forwarded-for", source_ip)
    merged["x-forwarded-port"] = domain_name.rpartition(":")[2] if ":" in domain_name else "80"

    epoch_ms = int(time.time() * 1000) if now_ms is None else now_ms
    host = domain_name.rsplit(":", 1)[0] if ":" in domain_name else domain_name
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = merged
    if raw_query:
        event["queryStringParameters"] = _query_parameters(raw_query)
    event["requestContext"] = {
        "accountId": LOCAL_ACCOUNT_ID,
        "apiId": LOCAL_API_ID,
        "domainName": domain_name,
        "domainPrefix": host.split(".", 1)[0],
        "http": {
            "method": method.upper(),
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": merged.get("user-agent", ""),
        },
        "requestId": _request_id(),
        "routeKey": route_key,
        "stage": "$default",
        "time": datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": epoch_ms,
    }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    encoded = False
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode("ascii")
            encoded = True
    event["isBase64Encoded"] = encoded
    return event


def scheduled_event(duty: str | None, *, rule_name: str = "fleetlink-cleanup") -> dict[str, Any]:
    """An EventBridge "Scheduled Event" naming the cleanup ``duty`` (None: every duty)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT_ID,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": LOCAL_REGION,
        "resources": [f"arn:aws:events:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:rule/{rule_name}"],
        "detail": {"duty": duty},
    }


@dataclass
class LocalLambdaContext:
    """What Lambda passes handlers as ``context``; the deadline starts when it is created."""

    function_name: str
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    function_version: str = "$LATEST"
    timeout_ms: int = 29_000
    _deadline: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_ms / 1000
        if not self.invoked_function_arn:
            self.invoked_function_arn = (
                f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"
            )
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before this invocation's timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))
