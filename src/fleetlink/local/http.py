"""The dev stack's HTTP/1.1 layer: requests read strictly (lengths, chunked bodies, limits), answers
written back, and the problem responses of what never reaches a handler."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from fleetlink.contract.problems import PROBLEM_CONTENT_TYPE, problem_document

#: Lambda's synchronous invocation payload limit; the handlers enforce the per-route limits below it.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
#: Headers the server sets itself, whatever a handler returns.
_HOP_BY_HOP = {"connection", "content-length", "keep-alive", "transfer-encoding", "date", "server"}
_DECIMAL = re.compile(r"[0-9]{1,19}")
#: How much of an oversized body is read and thrown away so the client sees the 413 cleanly.
_MAX_DRAIN_BYTES = 64 * 1024 * 1024


# --- responses -----------------------------------------------------------------------------------


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def problem_response(
    status: int, code: str, detail: str, *, instance: str | None = None, headers: dict[str, str] | None = None
) -> HttpResponse:
    """An RFC 9457 problem produced by the dev server itself (as API Gateway would answer)."""
    document = problem_document(status, code, detail, instance=instance)
    pairs = [("Content-Type", PROBLEM_CONTENT_TYPE), *(headers or {}).items()]
    return HttpResponse(status, pairs, json.dumps(document).encode())


def lambda_response(result: Any) -> HttpResponse:
    """The HTTP response API Gateway makes of a handler's payload 2.0 result."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # API Gateway: a result without statusCode is a 200 whose body is the JSON result.
        return HttpResponse(200, [("Content-Type", "application/json")], json.dumps(result).encode())
    pairs: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        pairs.append((name, str(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        pairs += [(name, str(value)) for value in values]
    pairs += [("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or []]
    pairs = [(name, value) for name, value in pairs if name.lower() not in _HOP_BY_HOP]
    body = result.get("body") or ""
    if isinstance(body, str):
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    else:
        payload = json.dumps(body).encode()
    return HttpResponse(int(result["statusCode"]), pairs, payload)


class Dispatcher(Protocol):
    """What the server hands each request to (the dev stack)."""

    def handle(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> HttpResponse: ...

    def log(self, line: str) -> None: ...


class Server(ThreadingHTTPServer):
    daemon_threads = True
    #: Connections the kernel holds until accepted (socketserver's default of 5 resets some of a
    #: fleet's agents when they connect at once while the server is busy).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[RequestHandler], *, stack: Dispatcher) -> None:
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        self.stack = stack
        super().__init__(address, handler)


class _BodyTooLargeError(Exception):
    pass


class _MalformedBodyError(Exception):
    pass


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fleetlink-dev"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    timeout = 120  # idle keep-alive connections end
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stack logs one access line per request instead."""

    def _declared_length(self) -> int:
        """Content-Length: one value of decimal digits (repeated identically at most), else malformed."""
        values = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not values:
            return 0
        if len(values) > 1:
            raise _MalformedBodyError("conflicting Content-Length headers")
        (value,) = values
        if not _DECIMAL.fullmatch(value):
            raise _MalformedBodyError("Content-Length is not a non-negative decimal number")
        return int(value)

    def _length_or_zero(self) -> int:
        try:
            return self._declared_length()
        except _MalformedBodyError:
            return 0

    def handle_expect_100(self) -> bool:
        if self._length_or_zero() > MAX_REQUEST_BYTES:
            self._reject_too_large(time.perf_counter(), drain=False)
            return False
        return super().handle_expect_100()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            if self.headers.get("Content-Length") is not None:
                raise _MalformedBodyError("both Content-Length and Transfer-Encoding: chunked")
            return self._read_chunked()
        length = self._declared_length()
        if length > MAX_REQUEST_BYTES:
            raise _BodyTooLargeError
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise _MalformedBodyError("the body is shorter than its Content-Length")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _MalformedBodyError("the chunked request body is malformed") from exc
            if size < 0:
                raise _MalformedBodyError("the chunked request body is malformed")
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_REQUEST_BYTES:
                self.close_connection = True
                raise _BodyTooLargeError
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _drain(self) -> None:
        """Read and drop the rest of a rejected body (bounded), so the client can read the answer."""
        remaining = min(self._length_or_zero(), _MAX_DRAIN_BYTES)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1024 * 1024))
            if not chunk:
                break
            remaining -= len(chunk)

    def _reject_too_large(self, started: float, *, drain: bool) -> None:
        self.close_connection = True
        response = problem_response(
            413,
            "payload-too-large",
            f"the body exceeds {MAX_REQUEST_BYTES} bytes",
            instance=urlsplit(self.path).path,
        )
        self._write(response, close=True)
        if drain:
            self._drain()
        self._access(response.status, started)

    def _dispatch(self) -> None:
        started = time.perf_counter()
        stack = self.server.stack
        try:
            body = self._read_body()
        except _BodyTooLargeError:
            self._reject_too_large(started, drain=True)
            return
        except _MalformedBodyError as exc:
            self.close_connection = True
            response = problem_response(400, "malformed-body", str(exc), instance=urlsplit(self.path).path)
            self._write(response, close=True)
            self._access(response.status, started)
            return
        response = stack.handle(self.command, self.path, list(self.headers.items()), body)
        self._write(response)
        self._access(response.status, started)

    def _write(self, response: HttpResponse, *, close: bool = False) -> None:
        try:
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _access(self, status: int, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.server.stack.log(f"{self.command} {urlsplit(self.path).path} {status} {elapsed_ms:.1f}ms")

    def __getattr__(self, name: str) -> Any:
        """``do_<METHOD>`` for any method: the routes decide (405 with ``Allow``), as API Gateway does."""
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors http.server raises itself (a bad request line, headers too long) as problems."""
        self.close_connection = True
        self.request_version = self.protocol_version  # a status line even when the request line was bad
        status = HTTPStatus(code)
        slug = status.phrase.lower().replace(" ", "-")
        response = problem_response(code, slug, explain or message or status.phrase)
        self._write(response, close=True)
