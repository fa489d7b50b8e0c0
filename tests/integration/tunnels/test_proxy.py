"""The built-in HTTP reverse proxy and TCP forwarder, over real sockets to real local servers."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from collections.abc import Iterator

import httpx
import pytest

from fleetlink.agent.tunnels.proxy import HttpProxy, RouteTable, TcpForwarder
from tests.integration.tunnels.conftest import LoopThread
from tests.integration.tunnels.targets import WAIT_S, WS_GUID, TargetServer, free_port, ws_frame, ws_read


def _url(proxy: HttpProxy, path: str) -> str:
    return f"http://127.0.0.1:{proxy.port}{path}"


@pytest.mark.parametrize(
    ("path", "server"),
    [("/", "a"), ("/apix", "a"), ("/api", "b"), ("/api/users?x=1", "b"), ("/api/admin/keys", "c")],
)
def test_longest_prefix_picks_the_target(proxy: HttpProxy, path: str, server: str) -> None:
    """Given routes / → a, /api → b, /api/admin → c; when a path is requested; then the longest
    whole-segment prefix decides the target."""
    answer = httpx.get(_url(proxy, path), timeout=WAIT_S)
    assert answer.status_code == 200
    assert answer.json()["server"] == server
    assert answer.json()["path"] == path


def test_equal_length_prefixes_go_by_priority() -> None:
    """Given two routes matching with the same prefix length; then the higher priority wins."""
    table = RouteTable("127.0.0.1:1", [("/v1/", "127.0.0.1:2", 0), ("/v1", "127.0.0.1:3", 0)])
    assert table.pick("/v1/x").port == 2  # "/v1/" is longer
    table = RouteTable("127.0.0.1:1", [("/a", "127.0.0.1:2", 1), ("/b", "127.0.0.1:3", 9)])
    assert table.pick("/a/x").port == 2


def test_forwarded_headers_added_and_hop_by_hop_dropped(proxy: HttpProxy) -> None:
    """Given a request with hop-by-hop headers; when proxied; then they are not forwarded and the
    X-Forwarded-* headers are."""
    answer = httpx.get(
        _url(proxy, "/h"),
        headers={
            "connection": "keep-alive, x-secret-hop",
            "x-secret-hop": "1",
            "proxy-authorization": "Basic x",
            "x-kept": "yes",
        },
        timeout=WAIT_S,
    )
    headers = answer.json()["headers"]
    assert "x-secret-hop" not in headers
    assert "proxy-authorization" not in headers
    assert headers["x-kept"] == "yes"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{proxy.port}"


def test_keep_alive_serves_many_requests_on_one_connection(proxy: HttpProxy) -> None:
    """Given one client connection; when it sends ten requests; then all are answered in order."""
    with httpx.Client(timeout=WAIT_S) as client:
        answers = [client.get(_url(proxy, f"/api/{i}")).json()["path"] for i in range(10)]
    assert answers == [f"/api/{i}" for i in range(10)]


def test_request_body_streams_to_the_target(proxy: HttpProxy) -> None:
    """Given an 8 MiB chunked upload; when proxied; then the target receives every byte."""
    blob = os.urandom(8 * 1024 * 1024)

    def parts() -> Iterator[bytes]:
        for start in range(0, len(blob), 256 * 1024):
            yield blob[start : start + 256 * 1024]

    answer = httpx.post(_url(proxy, "/api/upload"), content=parts(), timeout=WAIT_S)
    assert answer.json() == {
        "server": "b",
        "path": "/api/upload",
        "method": "POST",
        "length": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }


def test_response_streams_before_the_target_finishes(
    proxy: HttpProxy, targets: dict[str, TargetServer]
) -> None:
    """Given a target that sends one chunk and then waits; when read through the proxy; then the
    first chunk arrives while the target still waits, and the rest after it is released."""
    with httpx.stream("GET", _url(proxy, "/stream/gated"), timeout=WAIT_S) as answer:
        lines = answer.iter_lines()
        first = next(lines)
        assert not targets["a"].gate.is_set()
        targets["a"].gate.set()
        rest = list(lines)
    assert [first, *rest] == [f"part-{i}" for i in range(5)]


def test_websocket_upgrade_passes_through(proxy: HttpProxy) -> None:
    """Given a WebSocket target behind /api; when a client upgrades through the proxy; then the
    handshake completes and frames echo both ways."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S) as sock:
        sock.sendall(
            (
                f"GET /api/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        rfile = sock.makefile("rb")
        status = rfile.readline()
        headers = {}
        while (line := rfile.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        assert status.startswith(b"HTTP/1.1 101")
        expected = base64.b64encode(
            hashlib.sha1((key + WS_GUID).encode(), usedforsecurity=False).digest()
        ).decode()
        assert headers["sec-websocket-accept"] == expected
        for message in (b"hello", b"x" * 70_000):
            sock.sendall(ws_frame(message))
            assert ws_read(rfile) == (0x1, b"b:" + message)
        sock.sendall(ws_frame(b"", opcode=0x8))
        assert ws_read(rfile)[0] == 0x8


def test_dead_target_gives_a_502_problem(loop: LoopThread) -> None:
    """Given a route whose target does not listen; when requested; then a 502 problem document
    names the target."""
    dead = f"127.0.0.1:{free_port()}"
    server = HttpProxy(RouteTable(dead))
    loop.run(server.start())
    try:
        answer = httpx.get(f"http://127.0.0.1:{server.port}/x", timeout=WAIT_S)
    finally:
        loop.run(server.stop())
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "urn:fleetlink:problem:upstream-unavailable"
    assert dead in answer.json()["detail"]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    ],
)
def test_hostile_requests_get_a_4xx_problem(proxy: HttpProxy, raw: bytes, status: int) -> None:
    """Given a malformed, smuggling-shaped or oversized request; then a 4xx problem, connection closed."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"application/problem+json" in data


def test_tcp_forwarder_splices_bytes(loop: LoopThread) -> None:
    """Given a TCP echo service; when a client talks through the forwarder; then bytes flow both
    ways and a half-close is passed on."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def echo() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    import threading

    threading.Thread(target=echo, daemon=True).start()
    forwarder = TcpForwarder(f"127.0.0.1:{port}")
    loop.run(forwarder.start())
    try:
        with socket.create_connection(("127.0.0.1", forwarder.port), timeout=WAIT_S) as sock:
            sock.sendall(b"hello tcp")
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    finally:
        loop.run(forwarder.stop())
        listener.close()
    assert data == b"HELLO TCP"
