"""The in-memory relay cloud behind a real HTTP server on 127.0.0.1, verifying RFC 9421 signatures.

It answers ``/v1/relay/immediate|batch|query`` the way the relay function will (per-record results,
422 problems for bad shapes, 413 over 5 MiB, 401 for a bad signature), so the agent's HTTP client
and sync worker are tested over a real socket before the cloud side exists.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel, ValidationError
from tests.fakes.relay_api import FakeRelayCloud

from fleetlink.auth.keys import PrivateKey
from fleetlink.auth.signatures import IncomingRequest, read_signature_params, verify_request
from fleetlink.contract.relay import BatchAnswer, BatchRequest, QueryRequest, RelayRecord
from fleetlink.core.entities import KeyAlg
from fleetlink.core.errors import FleetlinkError
from fleetlink.core.relay.records import MAX_BATCH_BYTES

MAX_BODY_BYTES = 1024 * 1024


@dataclass
class RelayHttpServer:
    cloud: FakeRelayCloud
    #: agent id -> (private key, alg): the server verifies with the public half.
    agents: dict[str, tuple[PrivateKey, KeyAlg]] = field(default_factory=dict)
    #: While set, every request answers 503 with this Retry-After (seconds).
    unavailable_retry_after: int | None = None
    requests: int = 0
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(
        self, method: str, target_uri: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            self.requests += 1
        if self.unavailable_retry_after is not None:
            return 503, {"Retry-After": str(self.unavailable_retry_after)}, _problem(503, "unavailable")
        try:
            params = read_signature_params(IncomingRequest(method, target_uri, headers, body))
            key, alg = self.agents[params.key_id]
            verify_request(
                IncomingRequest(method, target_uri, headers, body),
                key.public_key(),
                alg,
                now_s=int(time.time()),
            )
        except (FleetlinkError, KeyError):
            return 401, {}, _problem(401, "unauthenticated")
        limit = MAX_BATCH_BYTES if path == "/v1/relay/batch" else MAX_BODY_BYTES
        if len(body) > limit:
            return 413, {}, _problem(413, "payload-too-large")
        node_id = params.key_id
        try:
            if path == "/v1/relay/immediate":
                record = RelayRecord.model_validate_json(body)
                return 200, {}, _dump(self.cloud.apply_batch(node_id, [record])[0])
            if path == "/v1/relay/batch":
                batch = BatchRequest.model_validate_json(body)
                return 200, {}, _dump(BatchAnswer(results=self.cloud.apply_batch(node_id, batch.records)))
            if path == "/v1/relay/query":
                return 200, {}, _dump(self.cloud.query(QueryRequest.model_validate_json(body)))
        except ValidationError as exc:
            return 422, {}, _problem(422, "invalid-input", f"{exc.error_count()} field errors")
        return 404, {}, _problem(404, "not-found")


def _dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json")


def _problem(status: int, code: str, detail: str = "") -> dict[str, Any]:
    return {"type": f"urn:fleetlink:problem:{code}", "title": code, "status": status, "detail": detail}


@contextmanager
def serve(server: RelayHttpServer) -> Iterator[RelayHttpServer]:
    """Serve ``server`` on 127.0.0.1 (a free port) until the block ends; ``server.url`` is its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = dict(self.headers.items())
            target = f"http://{self.headers.get('Host')}{self.path}"
            status, extra, answer = server.handle("POST", target, self.path, headers, body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type", "application/json" if status < 400 else "application/problem+json"
            )
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client killed mid-request (the crash test does that on purpose)

    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
