"""The dev server's own answers on the wire, as API Gateway gives them: problems, never HTML."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from fleetlink.local.server import DevStack

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    with DevStack(port=0, cleanup_every_s=0, access_log=None, operator_token="token") as running:
        yield running


def exchange(stack: DevStack, request: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    """Send raw bytes on a fresh connection; the status, headers and JSON body of the answer."""
    host, port = stack.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def post(length: str, body: bytes = b"") -> bytes:
    return b"POST /v1/tasks HTTP/1.1\r\nHost: t\r\nContent-Length: " + length.encode() + b"\r\n\r\n" + body


@pytest.mark.parametrize("method", ["FOO", "TRACE", "PATCH"])
def test_an_unknown_method_is_a_405_problem_with_allow(stack: DevStack, method: str) -> None:
    # Given a method no route of /v1/tasks takes; Then 405, a problem, and the methods it takes
    status, headers, body = exchange(stack, f"{method} /v1/tasks HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert (status, headers["content-type"], body["status"]) == (405, "application/problem+json", 405)
    assert headers["allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("request_bytes", "detail"),
    [
        (post("-5"), "Content-Length is not a non-negative decimal number"),
        (post("abc"), "Content-Length is not a non-negative decimal number"),
        (post("50", b"{}"), "the body is shorter than its Content-Length"),
        (
            b"POST /v1/tasks HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            "conflicting Content-Length headers",
        ),
    ],
)
def test_a_bad_content_length_is_a_400_problem(stack: DevStack, request_bytes: bytes, detail: str) -> None:
    # Given a negative, non-numeric, conflicting or overstated Content-Length; Then 400 saying which
    status, headers, body = exchange(stack, request_bytes)
    assert (status, headers["content-type"], body["detail"]) == (400, "application/problem+json", detail)


def test_a_malformed_request_line_is_a_400_problem(stack: DevStack) -> None:
    # Given a request line http.server cannot parse; Then a problem document, not its HTML page
    status, headers, body = exchange(stack, b"GET /v1/health HTTP/1.1 extra\r\nHost: t\r\n\r\n")
    assert (status, headers["content-type"], body["status"]) == (400, "application/problem+json", 400)
