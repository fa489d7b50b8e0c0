"""The proxy's data path over real sockets, on both loops the agent can run it on (asyncio's own and
uvloop): answers without a body, pipelined requests, interim answers, upstream connections kept
alive and reused (and a stale one retried), a target that never answers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvloop

from fleetlink.agent.tunnels.proxy import HttpProxy, RouteTable
from tests.integration.tunnels.conftest import LoopThread
from tests.integration.tunnels.targets import WAIT_S, RawTarget, TargetServer


class _Loop(LoopThread):
    def __init__(self, factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self.loop = factory()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()


@pytest.fixture(params=["asyncio", "uvloop"])
def any_loop(request: pytest.FixtureRequest) -> Iterator[LoopThread]:
    thread = _Loop(asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop)
    yield thread
    thread.close()


def _ok(head: bytes) -> bytes:
    path = head.split(b" ", 2)[1]
    body = json.dumps({"path": path.decode()}).encode()
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


@contextmanager
def proxying(loop: LoopThread, target: str, response_timeout: float = 60.0) -> Iterator[HttpProxy]:
    """A proxy in front of ``target``, on ``loop``, stopped when the block ends."""
    server = HttpProxy(RouteTable(target), response_timeout=response_timeout)
    loop.run(server.start())
    try:
        yield server
    finally:
        loop.run(server.stop())


def _read_answers(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` answers (head, body) with Content-Length bodies from a raw socket."""
    rfile = sock.makefile("rb")
    answers = []
    for _ in range(count):
        head = b""
        while (line := rfile.readline()) not in (b"\r\n", b""):
            head += line
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        answers.append((head, rfile.read(length) if length and not head.startswith(b"HTTP/1.1 1") else b""))
    return answers


def test_an_answer_to_head_ends_at_its_head_and_the_connection_goes_on(any_loop: LoopThread) -> None:
    # Given a target that answers HEAD with a Content-Length and no body, and GET with a body
    def answer(head: bytes) -> bytes:
        if head.startswith(b"HEAD "):
            return b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"
        return _ok(head)

    with (
        RawTarget(answer) as target,
        proxying(any_loop, target.target) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S) as sock,
    ):
        # When a HEAD and then a GET are sent on one connection
        sock.sendall(b"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n")
        rfile = sock.makefile("rb")
        head = b""
        while (line := rfile.readline()) != b"\r\n":
            head += line
        sock.sendall(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
        ((second, body),) = _read_answers(sock, 1)
    # Then the HEAD's answer keeps its Content-Length and carries no body; the GET is answered next
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: 1234" in head.lower()
    assert second.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body) == {"path": "/b"}


def test_pipelined_requests_are_answered_in_order(
    any_loop: LoopThread, targets: dict[str, TargetServer]
) -> None:
    # Given a proxy in front of a real HTTP server
    with (
        proxying(any_loop, targets["a"].target) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S) as sock,
    ):
        # When three requests are sent in one write, before any answer
        sock.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(3)))
        answers = _read_answers(sock, 3)
    # Then three answers come back, in the order asked
    assert [json.loads(body)["path"] for _, body in answers] == ["/p0", "/p1", "/p2"]


def test_an_interim_answer_reaches_the_client_before_it_sends_its_body(
    any_loop: LoopThread, targets: dict[str, TargetServer]
) -> None:
    # Given a proxy in front of a server that honours Expect: 100-continue
    with (
        proxying(any_loop, targets["a"].target) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S) as sock,
    ):
        # When a client asks to continue and waits for the 100 before sending its body
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        ((interim, _),) = _read_answers(sock, 1)
        sock.sendall(b"hello")
        ((final, body),) = _read_answers(sock, 1)
    # Then the 100 came through, and the final answer saw the whole body
    assert interim.startswith(b"HTTP/1.1 100 ")
    assert final.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["length"] == 5


def test_upstream_connections_are_kept_alive_and_reused(any_loop: LoopThread) -> None:
    # Given a target that counts the connections it accepts
    with RawTarget(_ok) as target, proxying(any_loop, target.target) as proxy:
        # When twenty requests come over one client connection, then ten over new ones, one by one
        with httpx.Client(timeout=WAIT_S) as client:
            paths = [client.get(f"http://127.0.0.1:{proxy.port}/k{i}").json()["path"] for i in range(20)]
        for i in range(10):
            with httpx.Client(timeout=WAIT_S) as client:
                paths.append(client.get(f"http://127.0.0.1:{proxy.port}/n{i}").json()["path"])
    # Then all are answered, over one connection to the target
    assert paths == [f"/k{i}" for i in range(20)] + [f"/n{i}" for i in range(10)]
    assert target.connections == 1


def test_a_kept_connection_the_target_closed_is_retried_on_a_new_one(any_loop: LoopThread) -> None:
    # Given a target that closes every connection after one answer, without saying so
    # When requests follow one another (each may find the kept connection closed)
    with (
        RawTarget(_ok, close_after=True) as target,
        proxying(any_loop, target.target) as proxy,
        httpx.Client(timeout=WAIT_S) as client,
    ):
        statuses = [client.get(f"http://127.0.0.1:{proxy.port}/r{i}").status_code for i in range(5)]
    # Then every request is answered by the target, none with a 502
    assert statuses == [200] * 5


def test_a_target_that_never_answers_gives_a_504_problem(any_loop: LoopThread) -> None:
    # Given a target that reads requests and never answers, behind a proxy waiting 0.5 s
    with (
        RawTarget(lambda _: None) as target,
        proxying(any_loop, target.target, response_timeout=0.5) as proxy,
    ):
        # When a request is sent
        answer = httpx.get(f"http://127.0.0.1:{proxy.port}/slow", timeout=WAIT_S)
    # Then a 504 problem names the target, and the refusal count is not touched (not the client's fault)
    assert answer.status_code == 504
    assert answer.json()["type"] == "urn:fleetlink:problem:upstream-timeout"
    assert target.target in answer.json()["detail"]
    assert proxy.refused.total() == 0


def test_a_malformed_answer_from_the_target_is_a_502_problem(any_loop: LoopThread) -> None:
    # Given a target whose answer carries a header value with a bare LF
    with (
        RawTarget(lambda _: b"HTTP/1.1 200 OK\r\nX-A: a\nb\r\ncontent-length: 0\r\n\r\n") as target,
        proxying(any_loop, target.target) as proxy,
    ):
        answer = httpx.get(f"http://127.0.0.1:{proxy.port}/x", timeout=WAIT_S)
    # Then the client gets a 502 problem, not the target's head
    assert answer.status_code == 502
    assert answer.json()["type"] == "urn:fleetlink:problem:bad-upstream-response"


def test_a_malformed_chunk_is_a_400_and_the_target_connection_is_dropped(any_loop: LoopThread) -> None:
    # Given a target that records what it receives and never answers (one answering the head at once
    # could, rightly, have its early answer passed on before the bad chunk arrives)
    with (
        RawTarget(lambda head: None) as target,
        proxying(any_loop, target.target) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S) as sock,
    ):
        # When a chunked upload holds a chunk size that is not hexadecimal
        sock.sendall(b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        sock.sendall(b"zz\r\nabc\r\n0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        # Then a 400 problem, counted, and the target's connection (half a request on it) is closed
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"urn:fleetlink:problem:bad-body" in answer
        assert proxy.refused["bad-body"] == 1
        assert b"zz" not in bytes(target.received)


def test_a_head_that_never_ends_is_cut_off_at_the_limit(any_loop: LoopThread) -> None:
    # Given a proxy; When a client sends a header line of 66 KiB in 1 KiB pieces, never ending it
    with (
        RawTarget(_ok) as target,
        proxying(any_loop, target.target) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: ")
        try:
            for _ in range(66):
                sock.sendall(b"a" * 1024)
        except OSError:
            pass  # the proxy may close before the last piece
        answer = sock.recv(65536)
    # Then a 431 problem, and the target never heard of it
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert target.connections == 0


def test_a_large_answer_reaches_a_slow_reader_whole(any_loop: LoopThread) -> None:
    # Given a target answering 16 MiB at once
    blob = os.urandom(16 * 1024 * 1024)
    with (
        RawTarget(lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(blob), blob)) as target,
        proxying(any_loop, target.target) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S) as sock,
    ):
        # When a client reads it in small pieces, pausing now and then (the proxy must hold back)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        received = bytearray()
        while len(received) < len(blob) + 40:
            chunk = sock.recv(16384)
            if not chunk:
                break
            received += chunk
            if len(received) % 20 == 0:
                time.sleep(0.001)
        # Then the whole answer arrives, byte for byte
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        while len(body) < len(blob):
            body += sock.recv(65536)
        assert hashlib.sha256(body).digest() == hashlib.sha256(blob).digest()


def test_a_client_that_stops_sending_gets_every_answer_first(
    any_loop: LoopThread, targets: dict[str, TargetServer]
) -> None:
    # Given a proxy in front of a real HTTP server
    with (
        proxying(any_loop, targets["a"].target) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S) as sock,
    ):
        # When a client pipelines two requests and shuts its sending side at once
        sock.sendall(b"GET /e0 HTTP/1.1\r\nHost: h\r\n\r\nGET /e1 HTTP/1.1\r\nHost: h\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        answers = _read_answers(sock, 2)
        rest = sock.recv(1)
    # Then both are answered, in order, and then the proxy closes the connection
    assert [json.loads(body)["path"] for _, body in answers] == ["/e0", "/e1"]
    assert rest == b""
