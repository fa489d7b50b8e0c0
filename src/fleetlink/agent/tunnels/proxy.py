"""The built-in data path: an asyncio HTTP/1.1 reverse proxy that routes by path prefix, and a
plain TCP forwarder.

HTTP: the longest matching route prefix wins (a prefix matches whole path segments: ``/api``
matches ``/api`` and ``/api/x``, not ``/apix``), then the higher ``priority``; no match goes to the
tunnel's own ``local_target``. Bodies stream both ways (Content-Length, chunked, or read-to-close),
hop-by-hop headers are dropped and ``X-Forwarded-*`` added, a WebSocket (any ``Upgrade``) is
passed through after the target's ``101``, and a target that does not answer gives a 502 problem
document. Upstream connections are kept alive and reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from fleetlink.contract.problems import PROBLEM_CONTENT_TYPE, problem_document
from fleetlink.contract.tunnels import split_host_port

HEAD_LIMIT = 64 * 1024
COPY_CHUNK = 64 * 1024
MAX_IDLE_PER_TARGET = 32

#: Headers meaningful for one connection only (RFC 9110 §7.6.1), never forwarded as-is.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_NO_BODY_STATUS = frozenset({204, 304})


class BadRequest(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class Route:
    prefix: str
    host: str
    port: int
    priority: int = 0

    def matches(self, path: str) -> bool:
        if self.prefix == "/" or path == self.prefix:
            return True
        stem = self.prefix if self.prefix.endswith("/") else self.prefix + "/"
        return path.startswith(stem)


class RouteTable:
    """Picks a target for a request path."""

    def __init__(self, default_target: str, routes: Sequence[tuple[str, str, int]] = ()) -> None:
        host, port = split_host_port(default_target)
        self.default = Route("/", host.strip("[]"), port)
        parsed = [Route(prefix, *split_host_port(target), priority) for prefix, target, priority in routes]
        self.routes = sorted(parsed, key=lambda r: (-len(r.prefix), -r.priority))

    def pick(self, path: str) -> Route:
        return next((route for route in self.routes if route.matches(path)), self.default)

    def targets(self) -> list[tuple[str, int]]:
        return sorted({(r.host, r.port) for r in [self.default, *self.routes]})


@dataclass
class _Message:
    start: list[bytes]
    headers: list[tuple[bytes, bytes]]
    #: Values by lower-case name, built once: a request looks several headers up.
    _by_name: dict[bytes, list[bytes]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {}
        for k, v in self.headers:
            self._by_name.setdefault(k.lower(), []).append(v)

    def values(self, name: bytes) -> list[bytes]:
        return self._by_name.get(name, [])

    def tokens(self, name: bytes) -> set[bytes]:
        return {t.strip().lower() for v in self.values(name) for t in v.split(b",") if t.strip()}


def parse_head(head: bytes, *, request: bool) -> _Message:
    lines = head[:-4].split(b"\r\n")
    start = lines[0].split(b" ", 2)
    if request and (len(start) != 3 or not start[2].startswith(b"HTTP/1.")):
        raise BadRequest(400, "bad-request-line", "the request line is not METHOD target HTTP/1.x")
    if not request and (len(start) < 2 or not start[0].startswith(b"HTTP/1.") or not start[1].isdigit()):
        raise BadRequest(502, "bad-upstream-response", "the target's answer is not HTTP/1.x")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise BadRequest(400, "bad-header", "a header line is malformed")
        headers.append((name, value.strip()))
    return _Message(start, headers)


def _body_framing(message: _Message) -> tuple[str, int]:
    """("length", n) | ("chunked", 0) | ("none", 0) for a request."""
    te = message.tokens(b"transfer-encoding")
    lengths = {v.strip() for v in message.values(b"content-length")}
    if te:
        if lengths:
            raise BadRequest(400, "ambiguous-length", "both Content-Length and Transfer-Encoding")
        if te != {b"chunked"}:
            raise BadRequest(
                501, "unsupported-transfer-encoding", "only chunked transfer coding is supported"
            )
        return "chunked", 0
    if lengths:
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            raise BadRequest(400, "bad-content-length", "Content-Length is not one number")
        return "length", int(next(iter(lengths)))
    return "none", 0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop the tunnels run on: uvloop (libuv) where it is installed, about half the CPU per
    proxied request of the default loop; else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def problem_response(status: int, code: str, title: str, detail: str, *, close: bool = True) -> bytes:
    body = json.dumps(problem_document(status, code, detail, title=title))
    head = (
        f"HTTP/1.1 {status} {title}\r\ncontent-type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"content-length: {len(body)}\r\n" + ("connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body.encode()


async def _copy_exact(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while n > 0:
        data = await reader.read(min(n, COPY_CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        writer.write(data)
        n -= len(data)
        await writer.drain()


async def _copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest(400, "bad-chunk", "a chunk size is not hexadecimal") from None
        writer.write(line)
        if size == 0:
            while True:
                trailer = await reader.readuntil(b"\r\n")
                writer.write(trailer)
                if trailer == b"\r\n":
                    await writer.drain()
                    return
        await _copy_exact(reader, writer, size + 2)


async def _copy_to_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(COPY_CHUNK):
        writer.write(data)
        await writer.drain()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until EOF, then half-close the other side."""
    try:
        await _copy_to_eof(reader, writer)
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Bidirectional byte copy until both directions end; closes both."""
    try:
        await asyncio.gather(pipe(a[0], b[1]), pipe(b[0], a[1]))
    finally:
        for writer in (a[1], b[1]):
            writer.close()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Server:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=HEAD_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.address

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handle(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # stop(): end quietly, the server is going away
            pass
        finally:
            self._tasks.discard(task)
            _close(writer)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None


class TcpForwarder(_Server):
    """``mode: tcp``: every connection is spliced to the target."""

    def __init__(
        self, target: str, host: str = "127.0.0.1", port: int = 0, connect_timeout: float = 5.0
    ) -> None:
        super().__init__(host, port)
        self.target = split_host_port(target)
        self.connect_timeout = connect_timeout

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(*self.target), self.connect_timeout)
        except (OSError, TimeoutError):
            return
        await splice((reader, writer), upstream)


class HttpProxy(_Server):
    """Path-prefix HTTP reverse proxy; ``table`` may be swapped while it runs."""

    def __init__(
        self,
        table: RouteTable,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        connect_timeout: float = 5.0,
        response_timeout: float = 60.0,
    ) -> None:
        super().__init__(host, port)
        self.table = table
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self._idle: dict[tuple[str, int], list[Conn]] = {}

    async def stop(self) -> None:
        await super().stop()
        for conns in self._idle.values():
            for _, writer in conns:
                _close(writer)
        self._idle.clear()

    async def _connect(self, route: Route) -> tuple[Conn, bool]:
        idle = self._idle.get((route.host, route.port), [])
        while idle:
            conn = idle.pop()
            if not conn[0].at_eof() and not conn[1].is_closing():
                return conn, True
            _close(conn[1])
        conn = await asyncio.wait_for(asyncio.open_connection(route.host, route.port), self.connect_timeout)
        return conn, False

    def _release(self, route: Route, conn: Conn) -> None:
        idle = self._idle.setdefault((route.host, route.port), [])
        if len(idle) < MAX_IDLE_PER_TARGET and not conn[1].is_closing():
            idle.append(conn)
        else:
            _close(conn[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if peer else "unknown"
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            except asyncio.LimitOverrunError:
                writer.write(
                    problem_response(
                        431,
                        "headers-too-large",
                        "Request Header Fields Too Large",
                        f"the request head is over {HEAD_LIMIT} bytes",
                    )
                )
                await writer.drain()
                return
            try:
                keep = await self._exchange(parse_head(head, request=True), reader, writer, client_ip)
            except BadRequest as error:
                writer.write(problem_response(error.status, error.code, "Bad Request", error.detail))
                await writer.drain()
                return
            if not keep:
                return

    def _upstream_head(self, request: _Message, upgrade: bytes | None, framing: str, client_ip: str) -> bytes:
        method, target, _ = request.start
        drop = HOP_BY_HOP | request.tokens(b"connection")
        lines = [method + b" " + target + b" HTTP/1.1"]
        lines += [
            k + b": " + v
            for k, v in request.headers
            if k.lower() not in drop and k.lower() != b"x-forwarded-for"
        ]
        forwarded_for = b", ".join([*request.values(b"x-forwarded-for"), client_ip.encode()])
        lines.append(b"x-forwarded-for: " + forwarded_for)
        if not request.values(b"x-forwarded-proto"):
            lines.append(b"x-forwarded-proto: http")
        if not request.values(b"x-forwarded-host") and request.values(b"host"):
            lines.append(b"x-forwarded-host: " + request.values(b"host")[0])
        if framing == "chunked":
            lines.append(b"transfer-encoding: chunked")
        if upgrade is not None:
            lines += [b"connection: upgrade", b"upgrade: " + upgrade]
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def _exchange(
        self, request: _Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_ip: str
    ) -> bool:
        method, target, version = request.start
        path = target.split(b"?", 1)[0].decode("latin-1")
        route = self.table.pick(path if path.startswith("/") else "/")
        framing, length = _body_framing(request)
        client_close = b"close" in request.tokens(b"connection") or (
            version == b"HTTP/1.0" and b"keep-alive" not in request.tokens(b"connection")
        )
        upgrade = (
            request.values(b"upgrade")[0]
            if (b"upgrade" in request.tokens(b"connection") and request.values(b"upgrade"))
            else None
        )
        head_out = self._upstream_head(request, upgrade, framing, client_ip)
        where = f"{route.host}:{route.port}" + (f" (route {route.prefix})" if route.prefix != "/" else "")

        response: _Message | None = None
        upstream: Conn | None = None
        for attempt in range(2):
            try:
                upstream, reused = await self._connect(route)
            except (OSError, TimeoutError):
                writer.write(
                    problem_response(
                        502, "upstream-unavailable", "Bad Gateway", f"nothing answers at {where}"
                    )
                )
                await writer.drain()
                return False
            up_reader, up_writer = upstream
            try:
                up_writer.write(head_out)
                if framing == "length":
                    await _copy_exact(reader, up_writer, length)
                elif framing == "chunked":
                    await _copy_chunked(reader, up_writer)
                await up_writer.drain()
                response = await self._read_response(up_reader, writer)
                break
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                _close(up_writer)
                # A kept-alive connection the target had closed: retry once if nothing was consumed.
                if reused and attempt == 0 and framing == "none":
                    continue
                writer.write(
                    problem_response(
                        502,
                        "upstream-unavailable",
                        "Bad Gateway",
                        f"{where} closed the connection ({type(error).__name__})",
                    )
                )
                await writer.drain()
                return False
            except TimeoutError:
                _close(up_writer)
                writer.write(
                    problem_response(
                        504,
                        "upstream-timeout",
                        "Gateway Timeout",
                        f"{where} did not answer in {self.response_timeout:g} s",
                    )
                )
                await writer.drain()
                return False
        assert response is not None
        assert upstream is not None
        up_reader, up_writer = upstream
        status = int(response.start[1])

        if status == 101 and upgrade is not None:
            writer.write(self._client_head(response, "upgrade", close=False))
            await writer.drain()
            await splice((reader, writer), upstream)
            return False

        if method == b"HEAD" or status in _NO_BODY_STATUS:
            body = "none"
        elif b"chunked" in response.tokens(b"transfer-encoding"):
            body = "chunked"
        elif response.values(b"content-length"):
            body = "length"
        else:
            body = "eof"
        close = client_close or body == "eof"
        head = self._client_head(response, body, close=close)
        try:
            if body == "length":
                # Head and first part of the body in one write: one send() for small answers.
                remaining = int(response.values(b"content-length")[0])
                first = await up_reader.read(min(remaining, COPY_CHUNK)) if remaining else b""
                if remaining and not first:
                    raise asyncio.IncompleteReadError(b"", remaining)
                writer.write(head + first)
                await _copy_exact(up_reader, writer, remaining - len(first))
            else:
                writer.write(head)
            if body == "chunked":
                await _copy_chunked(up_reader, writer)
            elif body == "eof":
                await _copy_to_eof(up_reader, writer)
            await writer.drain()
        except BaseException:
            _close(up_writer)
            raise
        if body != "eof" and b"close" not in response.tokens(b"connection"):
            self._release(route, upstream)
        else:
            _close(up_writer)
        return not close

    async def _read_response(self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Message:
        """The target's final (or 101) response head; 1xx interim answers go to the client as they come."""
        while True:
            # asyncio.timeout, not wait_for: no task per request on the hot path.
            async with asyncio.timeout(self.response_timeout):
                head = await up_reader.readuntil(b"\r\n\r\n")
            response = parse_head(head, request=False)
            status = int(response.start[1])
            if 100 <= status < 200 and status != 101:
                writer.write(head)
                await writer.drain()
                continue
            return response

    @staticmethod
    def _client_head(response: _Message, body: str, *, close: bool) -> bytes:
        drop = HOP_BY_HOP | response.tokens(b"connection")
        start = b" ".join(response.start)
        lines = [b"HTTP/1.1 " + start.split(b" ", 1)[1]]
        lines += [k + b": " + v for k, v in response.headers if k.lower() not in drop]
        if body == "chunked":
            lines.append(b"transfer-encoding: chunked")
        if body == "upgrade":
            lines += [
                b"connection: upgrade",
                b"upgrade: " + (response.values(b"upgrade") or [b"websocket"])[0],
            ]
        elif close:
            lines.append(b"connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n"
