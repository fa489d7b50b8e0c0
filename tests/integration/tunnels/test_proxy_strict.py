"""The self_hosted proxy parses as strictly as RFC 9112/9110 ask of an intermediary: hostile heads
never reach a target, and every spelling of a path routes (and is forwarded) by its normal form.

Targets are real: a raw-socket server that records the bytes it receives, and the HTTP echo servers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from fleetlink.agent.tunnels.proxy import HttpProxy, RouteTable
from tests.integration.tunnels.conftest import LoopThread
from tests.integration.tunnels.targets import WAIT_S, RawTarget, wait_until


@pytest.fixture
def recording(loop: LoopThread) -> Iterator[tuple[HttpProxy, RawTarget]]:
    target = RawTarget(lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    server = HttpProxy(RouteTable(target.target))
    loop.run(server.start())
    yield server, target
    loop.run(server.stop())
    target.close()


def _raw(port: int, request: bytes) -> bytes:
    """Send raw bytes, read the answer until the proxy closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    "value",
    [
        b"a\nTransfer-Encoding: chunked",
        b"a\rTransfer-Encoding: chunked",
        b"a\x00b",
        b"a\x1b]0;owned\x07",
        b"a\x7fb",
    ],
    ids=["LF", "CR", "NUL", "ESC-BEL", "DEL"],
)
def test_a_header_value_with_a_control_character_never_reaches_the_target(
    recording: tuple[HttpProxy, RawTarget], value: bytes
) -> None:
    # Given a proxy in front of a target that records every byte
    proxy, target = recording
    # When a request carries a header value holding a control character
    head = b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: " + value + b"\r\n\r\n"
    answer = _raw(proxy.port, head + b"GET /y HTTP/1.1\r\n\r\n")
    # Then a 400 problem, and the target received nothing at all
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"application/problem+json" in answer
    assert bytes(target.received) == b""
    assert proxy.refused["bad-header"] >= 1


@pytest.mark.parametrize(
    "name", [b"X A", b"X\x00A", b"X(A)", b""], ids=["space", "NUL", "separator", "empty"]
)
def test_a_malformed_header_name_is_refused(recording: tuple[HttpProxy, RawTarget], name: bytes) -> None:
    proxy, target = recording
    answer = _raw(proxy.port, b"GET /x HTTP/1.1\r\nHost: h\r\n" + name + b": v\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert bytes(target.received) == b""


@pytest.mark.parametrize(
    "head",
    [
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
        b"GET /x HTTP/1.1\r\nX-A: 1\r\n\r\n",
        b"GET /x HTTP/1.0\r\n\r\n",
    ],
    ids=["two-hosts", "same-host-twice", "no-host", "no-host-1.0"],
)
def test_duplicate_or_missing_host_is_a_400(recording: tuple[HttpProxy, RawTarget], head: bytes) -> None:
    # Given a request with no Host or more than one; When proxied; Then a 400 problem, nothing forwarded
    proxy, target = recording
    answer = _raw(proxy.port, head)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"urn:fleetlink:problem:bad-host" in answer
    assert bytes(target.received) == b""


def test_exactly_one_host_is_forwarded(recording: tuple[HttpProxy, RawTarget]) -> None:
    proxy, target = recording
    answer = _raw(proxy.port, b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert bytes(target.received).lower().count(b"\r\nhost:") == 1


@pytest.mark.parametrize(
    ("path", "server", "forwarded"),
    [
        ("/api/../internal", "a", "/internal"),
        ("/api/%2e%2e/internal", "a", "/internal"),
        ("/api/%2E%2E/internal", "a", "/internal"),
        ("/api/.%2e/internal", "a", "/internal"),
        ("/api/./x", "b", "/api/x"),
        ("/api/%2e/x", "b", "/api/x"),
        ("/x/../api/y", "b", "/api/y"),
        ("/api/admin/../users", "b", "/api/users"),
        ("/api//admin/x", "c", "/api/admin/x"),
        ("//api///admin//x", "c", "/api/admin/x"),
        ("/api/./admin/x", "c", "/api/admin/x"),
        ("/api/admin/./../admin/x?q=1", "c", "/api/admin/x?q=1"),
        ("/%61pi/%61dmin", "c", "/api/admin"),
        ("/../../api", "b", "/api"),
        ("/api/..", "a", "/"),
        ("/api/x/..", "b", "/api/"),
    ],
)
def test_every_dot_segment_and_double_slash_variant_routes_by_its_normal_form(
    proxy: HttpProxy, path: str, server: str, forwarded: str
) -> None:
    # Given routes / → a, /api → b, /api/admin → c; When a path spelled with dot-segments, encoded
    # dots, unreserved escapes or repeated slashes is requested (sent as is, not cleaned by the client)
    answer = _raw(proxy.port, f"GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
    # Then it goes where its normalised path routes, and the target sees that normalised path
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    body = httpx.Response(200, content=answer.split(b"\r\n\r\n", 1)[1]).json()
    assert (body["server"], body["path"]) == (server, forwarded)


@pytest.mark.parametrize(
    "path",
    [
        "/api/..%2finternal",
        "/api/..%2Finternal",
        "/api%2fadmin/x",
        "/api/..%5cinternal",
        "/api/x%2f..%2fadmin/y",
    ],
)
def test_an_encoded_slash_that_would_change_the_route_is_refused(proxy: HttpProxy, path: str) -> None:
    # Given routes / → a, /api → b, /api/admin → c; When an encoded / (or \) would route elsewhere
    # once a backend decoded it; Then a 400 problem, counted
    answer = _raw(proxy.port, f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"urn:fleetlink:problem:ambiguous-path" in answer
    assert proxy.refused["ambiguous-path"] == 1


def test_an_encoded_slash_inside_one_route_is_forwarded_as_sent(proxy: HttpProxy) -> None:
    # Given an encoded / that routes the same either way (a file name holding a slash)
    answer = _raw(proxy.port, b"GET /api/files/a%2fb HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    # Then it is forwarded, still encoded
    body = httpx.Response(200, content=answer.split(b"\r\n\r\n", 1)[1]).json()
    assert (body["server"], body["path"]) == ("b", "/api/files/a%2Fb")


@pytest.mark.parametrize(
    "head",
    [
        b"GET http://evil/api HTTP/1.1\r\nHost: h\r\n\r\n",
        b"CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n",
        b"GET /x HTTP/2.0\r\nHost: h\r\n\r\n",
        b"GET /x#frag HTTP/1.1\r\nHost: h\r\n\r\n",
    ],
    ids=["absolute-form", "connect", "http2", "fragment"],
)
def test_other_request_targets_and_versions_are_refused(
    recording: tuple[HttpProxy, RawTarget], head: bytes
) -> None:
    proxy, target = recording
    answer = _raw(proxy.port, head)
    assert answer[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 505")
    assert bytes(target.received) == b""


def test_refusals_are_counted_and_logged_once_per_burst(
    recording: tuple[HttpProxy, RawTarget], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a burst of twenty hostile requests
    proxy, _ = recording
    caplog.set_level("WARNING", logger="fleetlink.agent.tunnels.proxy")
    for _ in range(20):
        _raw(proxy.port, b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    # Then all are counted, and the log has one line for the burst
    wait_until(lambda: proxy.refused.total() == 20)
    assert proxy.refused["bad-host"] == 20
    lines = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1


def test_the_provider_reports_its_proxys_refusals(recording: tuple[HttpProxy, RawTarget]) -> None:
    # Given a self_hosted provider's proxy that refused two requests
    from fleetlink.agent.tunnels.providers.self_hosted import SelfHostedProvider

    proxy, _ = recording
    for _ in range(2):
        _raw(proxy.port, b"GET /x HTTP/1.1\r\n\r\n")
    provider = SelfHostedProvider.__new__(SelfHostedProvider)
    provider.server = proxy
    # Then the count the agent puts in its heartbeat metrics says so
    assert provider.refused_requests == 2
