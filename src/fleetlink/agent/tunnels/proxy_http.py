"""The self_hosted proxy's HTTP data path: asyncio protocols over transports, no streams.

A ``ClientSide`` per client connection and an ``UpstreamSide`` per connection to a target, each
with one llhttp parser (``httptools``) fed the bytes as they arrive. Heads are checked in the
parser's callbacks (``strict_http``) before anything is forwarded; a head goes on as one write (the
received bytes themselves where nothing in them changes), body bytes as llhttp hands them over, and
what one received chunk produces leaves in one write. Upstream connections are kept alive and
reused (``HttpProxy`` holds the idle ones). One request per client connection is in flight;
pipelined ones wait in order, the client's reading paused meanwhile.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from fleetlink.agent.tunnels.strict_http import (
    HOP_BY_HOP,
    BadRequest,
    Head,
    check_request,
    normalise_target,
    problem_response,
    request_framing,
)

if TYPE_CHECKING:
    from fleetlink.agent.tunnels.proxy import HttpProxy, Route

HEAD_LIMIT = 64 * 1024
#: Request bytes held for a target still being connected to before the client is paused.
PENDING_LIMIT = 256 * 1024
_NO_BODY_STATUS = frozenset({204, 304})
#: Request headers the proxy rewrites; a head without any keeps its header block byte for byte.
_REWRITTEN = HOP_BY_HOP | {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}


def _head_too_large() -> BadRequest:
    return BadRequest(431, "headers-too-large", f"the request head is over {HEAD_LIMIT} bytes")


class _HeadAnswered(Exception):
    """From a callback: the answer to a HEAD request ends with its head (llhttp cannot be told so)."""


class _Unsolicited(Exception):
    """From a callback: the target sent a second answer to one request."""


def upstream_head(
    request: Head, target: bytes, upgrade: bytes | None, framing: str, client_ip: bytes
) -> bytes:
    """The request head the target gets: hop-by-hop headers dropped, ``X-Forwarded-*`` added."""
    start = request.method + b" " + target + b" HTTP/1.1\r\n"
    plain = upgrade is None and framing != "chunked"
    if plain and request.raw and request.by_name.keys().isdisjoint(_REWRITTEN):
        # the common case: the client's (validated) header block as is, then the forwarding headers
        block = request.raw[request.raw.index(b"\r\n") + 2 : -2]
        host = request.by_name[b"host"][0]
        return b"%s%sx-forwarded-for: %s\r\nx-forwarded-proto: http\r\nx-forwarded-host: %s\r\n\r\n" % (
            start,
            block,
            client_ip,
            host,
        )
    connection = request.tokens(b"connection")
    drop = HOP_BY_HOP | connection if connection else HOP_BY_HOP
    lines = [start[:-2]]
    drop |= {b"x-forwarded-for"}
    lines += [k + b": " + v for k, v in request.headers if k.lower() not in drop]
    lines.append(b"x-forwarded-for: " + b", ".join([*request.values(b"x-forwarded-for"), client_ip]))
    if not request.values(b"x-forwarded-proto"):
        lines.append(b"x-forwarded-proto: http")
    if not request.values(b"x-forwarded-host"):
        lines.append(b"x-forwarded-host: " + request.values(b"host")[0])
    if framing == "chunked":
        lines.append(b"transfer-encoding: chunked")
    if upgrade is not None:
        lines += [b"connection: upgrade", b"upgrade: " + upgrade]
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def client_head(response: Head, body: str, *, close: bool) -> bytes:
    """The answer head the client gets: the target's as received when nothing in it must change."""
    plain = body == "length" and not close and response.version == b"HTTP/1.1"
    if plain and response.raw and response.by_name.keys().isdisjoint(HOP_BY_HOP):
        return response.raw
    connection = response.tokens(b"connection")
    drop = HOP_BY_HOP | connection if connection else HOP_BY_HOP
    lines = [b"HTTP/1.1 %d %s" % (response.status, response.reason)]
    lines += [k + b": " + v for k, v in response.headers if k.lower() not in drop]
    if body == "chunked":
        lines.append(b"transfer-encoding: chunked")
    if body == "upgrade":
        lines += [b"connection: upgrade", b"upgrade: " + (response.values(b"upgrade") or [b"websocket"])[0]]
    elif close:
        lines.append(b"connection: close")
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


class Exchange:
    """One request on its way to a target, and its answer on the way back."""

    __slots__ = (
        "answered",
        "client_close",
        "framing",
        "head",
        "is_head",
        "pending",
        "pending_size",
        "request_done",
        "retried",
        "reused",
        "route",
        "timer",
        "upgrade",
        "upstream",
    )

    def __init__(
        self,
        route: Route,
        head: bytes,
        framing: str,
        upgrade: bytes | None,
        client_close: bool,
        is_head: bool,
    ) -> None:
        self.route, self.head, self.framing, self.upgrade = route, head, framing, upgrade
        self.client_close, self.is_head = client_close, is_head
        #: Request bytes not yet written to the target (the head first).
        self.pending = [head]
        self.pending_size = 0
        self.request_done = self.answered = self.retried = self.reused = False
        self.upstream: UpstreamSide | None = None
        self.timer: asyncio.TimerHandle | None = None

    @property
    def where(self) -> str:
        route = self.route
        return f"{route.host}:{route.port}" + (f" (route {route.prefix})" if route.prefix != "/" else "")


class _HeadParts:
    """The head being parsed: llhttp's callbacks fill it. ``chunk`` is the data being fed, and
    ``began_with`` the chunk the message's first byte was the first byte of (else None)."""

    __slots__ = ("began_with", "by_name", "chunk", "fresh", "headers", "in_head", "size")

    def __init__(self) -> None:
        self.chunk = b""
        self.fresh = True  # no message ended yet in the chunk being fed
        self.began_with: bytes | None = None
        self.in_head = True
        self.size = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.by_name: dict[bytes, list[bytes]] = {}

    def begin(self) -> None:
        chunk = self.chunk
        self.began_with = chunk if self.fresh and chunk[:1] not in (b"\r", b"\n") else None
        self.in_head = True
        self.size = 0
        self.headers = []
        self.by_name = {}

    def add(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a trailer field: not forwarded (RFC 9110 §6.5.1)
        self.size += len(name) + len(value) + 4
        if self.size > HEAD_LIMIT:
            raise _head_too_large()
        self.headers.append((name, value))
        lower = name.lower()
        if (seen := self.by_name.get(lower)) is None:
            self.by_name[lower] = [value]
        else:
            seen.append(value)

    def raw(self) -> bytes:
        """The head's bytes when the chunk being fed began with it, else b""."""
        chunk = self.chunk
        if self.began_with is not chunk:
            return b""
        end = chunk.find(b"\r\n\r\n")
        return chunk[: end + 4] if end >= 0 else b""


class ClientSide(asyncio.Protocol):
    """One client connection: parses its requests and sends each to the target its route picks."""

    def __init__(self, proxy: HttpProxy) -> None:
        self.proxy = proxy
        self.parser = httptools.HttpRequestParser(self)
        self.parts = _HeadParts()
        self.url = b""
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.client_ip = b"unknown"
        self.current: Exchange | None = None  # the request being answered
        self.parsing: Exchange | None = None  # the request whose body is arriving
        self.queue: deque[Exchange] = deque()  # pipelined requests waiting their turn
        self.refusal: bytes | None = None  # a problem owed once the requests before it are answered
        self.tunnel: UpstreamSide | None = None  # after a 101: bytes relayed as they are
        self.held: list[bytes] | None = None  # bytes after an upgrade request, until it is answered
        self.paused: set[str] = set()
        self.writing_paused = False
        self.eof = self.closed = False
        self.head_bytes = 0  # bytes of an unfinished head received in chunks of their own

    # --- transport events ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self.client_ip = (str(peer[0]) if peer else "unknown").encode()
        self.proxy.clients.add(self)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        if self.held is not None:
            self.held.append(data)
            return
        if self.refusal is not None:
            return
        parts = self.parts
        parts.chunk = data
        parts.fresh = True
        if parts.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.held = [data[upgrade.args[0] :]]
            self.hold_reading("upgrade")
        except httptools.HttpParserCallbackError as error:
            if not isinstance(error.__context__, BadRequest):
                raise
            self._refuse(error.__context__)
        except httptools.HttpParserError as error:
            if parts.in_head:
                self._refuse(BadRequest(400, "bad-header", f"the request head is malformed: {error}"))
            else:
                self._refuse(BadRequest(400, "bad-body", f"the request body is malformed: {error}"))
        else:
            if parts.in_head and self.head_bytes > HEAD_LIMIT:
                self._refuse(_head_too_large())
        parts.chunk = b""
        current = self.current
        if current is not None:
            if current.upstream is not None and current.pending:
                self.flush(current)
            elif current.pending_size > PENDING_LIMIT:
                self.hold_reading("connecting")
            if self.queue:
                self.hold_reading("queue")

    def eof_received(self) -> bool:
        self.eof = True
        if self.tunnel is not None:
            return half_close(self.tunnel, self)
        return self.current is not None  # answer the request in flight, then close

    def pause_writing(self) -> None:
        self.writing_paused = True
        upstream = self.tunnel or (self.current.upstream if self.current else None)
        if upstream is not None and not upstream.transport.is_closing():
            upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        upstream = self.tunnel or (self.current.upstream if self.current else None)
        if upstream is not None and not upstream.transport.is_closing():
            upstream.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.clients.discard(self)
        if self.tunnel is not None:
            self.tunnel.transport.close()
        for exchange in (self.current, *self.queue):
            if exchange is not None:
                if exchange.timer is not None:
                    exchange.timer.cancel()
                if exchange.upstream is not None:
                    exchange.upstream.abandon()
        self.current = None
        self.queue.clear()

    # --- llhttp callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.parts.begin()
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.parts.add(name, value)

    def on_headers_complete(self) -> None:
        parts, parser, url = self.parts, self.parser, self.url
        parts.in_head = False
        self.head_bytes = 0
        method, version = parser.get_method(), parser.get_http_version()
        check_request(method, version, url, parts.by_name)
        request = Head(parts.headers, parts.by_name, parts.raw(), method, url, b"HTTP/" + version.encode())
        table = self.proxy.table
        target, path = normalise_target(url, table.pick)
        framing = request_framing(request)
        if parser.should_upgrade() and framing != "none":
            raise BadRequest(400, "bad-upgrade", "an upgrade request carries no body")
        connection = request.tokens(b"connection")
        client_close = b"close" in connection or (version == "1.0" and b"keep-alive" not in connection)
        upgrade = None
        if b"upgrade" in connection and (offered := request.values(b"upgrade")):
            upgrade = offered[0]
        exchange = Exchange(
            table.pick(path),
            upstream_head(request, target, upgrade, framing, self.client_ip),
            framing,
            upgrade,
            client_close,
            method == b"HEAD",
        )
        self.parsing = exchange
        if self.current is None:
            self.start(exchange)
        else:
            self.queue.append(exchange)

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is None:
            return
        if exchange.framing == "chunked":
            exchange.pending += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            exchange.pending.append(body)
        exchange.pending_size += len(body)

    def on_message_complete(self) -> None:
        parts = self.parts
        parts.fresh = False
        parts.in_head = True
        self.head_bytes = 0
        exchange = self.parsing
        if exchange is not None:
            if exchange.framing == "chunked":
                exchange.pending.append(b"0\r\n\r\n")
            exchange.request_done = True
            self.parsing = None

    # --- exchanges -------------------------------------------------------------------------------

    def start(self, exchange: Exchange) -> None:
        """Send ``exchange`` to its target on an idle connection, or a new one."""
        self.current = exchange
        upstream = self.proxy.idle_upstream(exchange.route)
        if upstream is None:
            self.proxy.spawn(self._connect(exchange))
        else:
            self.attach(exchange, upstream, reused=True)

    async def _connect(self, exchange: Exchange) -> None:
        route = exchange.route
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.proxy.connect_timeout):
                _, upstream = await loop.create_connection(
                    lambda: UpstreamSide(self.proxy, (route.host, route.port)), route.host, route.port
                )
        except (OSError, TimeoutError):
            self.fail(exchange, 502, "upstream-unavailable", f"nothing answers at {exchange.where}")
            return
        if self.closed or self.current is not exchange:
            upstream.transport.close()
            return
        self.attach(exchange, upstream, reused=False)

    def attach(self, exchange: Exchange, upstream: UpstreamSide, *, reused: bool) -> None:
        exchange.upstream, exchange.reused = upstream, reused
        upstream.exchange, upstream.client = exchange, self
        if self.writing_paused:
            upstream.transport.pause_reading()
        exchange.timer = asyncio.get_running_loop().call_later(
            self.proxy.response_timeout, self._timed_out, exchange
        )
        self.flush(exchange)
        self.release_reading("connecting")

    def flush(self, exchange: Exchange) -> None:
        """Write the request bytes the target has not got yet, in one write."""
        pending = exchange.pending
        if pending and exchange.upstream is not None:
            exchange.upstream.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
            exchange.pending = []
            exchange.pending_size = 0

    def answered(self, exchange: Exchange, *, close: bool) -> None:
        """The target's answer to ``exchange`` has gone to the client: on to the next request."""
        self.current = None
        if close or self.eof or not exchange.request_done:
            self.transport.close()
        elif self.queue:
            self.start(self.queue.popleft())
            if not self.queue:
                self.release_reading("queue")
        elif self.refusal is not None:
            self.transport.write(self.refusal)
            self.transport.close()

    def retry_or_fail(self, exchange: Exchange, error: str) -> None:
        """The target closed the connection before answering."""
        if exchange.timer is not None:
            exchange.timer.cancel()
        exchange.upstream = None
        # A kept-alive connection the target had closed: try once more if nothing was consumed.
        if exchange.reused and not exchange.retried and exchange.framing == "none":
            exchange.retried = True
            exchange.pending = [exchange.head]
            self.proxy.spawn(self._connect(exchange))
            return
        self.fail(exchange, 502, "upstream-unavailable", f"{exchange.where} closed the connection ({error})")

    def fail(self, exchange: Exchange, status: int, code: str, detail: str) -> None:
        """Answer a gateway problem for ``exchange`` and close the connection."""
        if exchange.timer is not None:
            exchange.timer.cancel()
        if exchange.upstream is not None:
            exchange.upstream.abandon()
        if self.closed:
            return
        if exchange.answered:  # part of an answer went out already: the client sees it cut short
            self.transport.close()
        elif status:
            self.transport.write(problem_response(status, code, _PHRASES[status], detail))
            self.transport.close()

    def _timed_out(self, exchange: Exchange) -> None:
        if self.current is exchange and not exchange.answered:
            timeout = self.proxy.response_timeout
            self.fail(exchange, 504, "upstream-timeout", f"{exchange.where} did not answer in {timeout:g} s")

    def open_tunnel(self, upstream: UpstreamSide, first: bytes) -> None:
        """After a 101: relay bytes both ways as they are."""
        self.current = None
        self.tunnel = upstream
        held, self.held = self.held or [], None
        if first:
            self.transport.write(first)
        if any(held):
            upstream.transport.write(b"".join(held))
        self.release_reading("upgrade")

    def _refuse(self, error: BadRequest) -> None:
        """Answer ``error`` after the requests before it, and close; what follows is not read."""
        answer = self.proxy.refusal(error.status, error.code, error.detail)
        parsing, self.parsing = self.parsing, None
        current = self.current
        if parsing is not None and parsing is not current:
            self.queue.remove(parsing)  # a request whose body went bad is not sent
        if current is not None and parsing is not current:
            self.refusal = answer
            self.hold_reading("refused")
            return
        if current is not None:  # its body went bad on the way: the target gets no more of it
            self.current = None
            self.fail(current, 0, "", "")
            if current.answered:
                return
        self.transport.write(answer)
        self.transport.close()

    def hold_reading(self, why: str) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()
        self.paused.add(why)

    def release_reading(self, why: str) -> None:
        if why in self.paused:
            self.paused.discard(why)
            if not self.paused and not self.closed:
                self.transport.resume_reading()


_PHRASES = {502: "Bad Gateway", 504: "Gateway Timeout"}


def half_close(peer: ClientSide | UpstreamSide, side: ClientSide | UpstreamSide) -> bool:
    """A tunnel's ``side`` got EOF: pass it on; once both have, close both. What eof_received returns."""
    if peer.eof:
        peer.transport.close()
        return False
    if peer.transport.can_write_eof():
        peer.transport.write_eof()
    return True


class UpstreamSide(asyncio.Protocol):
    """One connection to a target: parses its answers and passes them to the client they are for."""

    def __init__(self, proxy: HttpProxy, key: tuple[str, int]) -> None:
        self.proxy, self.key = proxy, key
        self.parser = httptools.HttpResponseParser(self)
        self.parts = _HeadParts()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.exchange: Exchange | None = None
        self.client: ClientSide | None = None
        self.tunnel: ClientSide | None = None
        self.reason = b""
        self.out: list[bytes] = []  # answer bytes for the client, written after each chunk
        self.body = "none"
        self.skip_body = self.interim = self.complete = self.eof = self.keep_alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for, on an idle connection
            self.transport.close()
            return
        parts = self.parts
        parts.chunk = data
        parts.fresh = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._flush()
            self._upgraded(data[upgrade.args[0] :])
            return
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, _HeadAnswered | _Unsolicited) or self.complete:
                self._flush()
                self._done(reuse=False)
            else:
                self._broken(exchange, error)
            return
        finally:
            parts.chunk = b""
        self._flush()
        if self.complete:
            self._done(reuse=self.keep_alive)

    def pause_writing(self) -> None:
        if (client := self.client or self.tunnel) is not None:
            client.hold_reading("target-busy")

    def resume_writing(self) -> None:
        if (client := self.client or self.tunnel) is not None:
            client.release_reading("target-busy")

    def eof_received(self) -> bool:
        self.eof = True
        tunnel = self.tunnel
        if tunnel is None:
            return False
        return half_close(tunnel, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.forget(self)
        if self.tunnel is not None:
            self.tunnel.transport.close()
            return
        exchange, client = self.exchange, self.client
        self.exchange = self.client = None
        if exchange is None or client is None:
            return
        if not exchange.answered:
            client.retry_or_fail(exchange, type(exc).__name__ if exc else "end of stream")
        elif self.body == "eof":  # read-to-close: the answer is complete
            if exchange.timer is not None:
                exchange.timer.cancel()
            client.answered(exchange, close=True)
        else:
            client.fail(exchange, 502, "upstream-unavailable", f"{exchange.where} closed the connection")

    def abandon(self) -> None:
        """The client went away or gave up mid-exchange: this connection is not reusable."""
        self.exchange = self.client = None
        self.transport.close()

    # --- llhttp callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise _Unsolicited
        self.parts.begin()
        self.reason = b""
        self.skip_body = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.parts.add(name, value)

    def on_headers_complete(self) -> None:
        parts, exchange = self.parts, self.exchange
        assert exchange is not None
        parts.in_head = False
        status = self.parser.get_status_code()
        raw = parts.raw()
        response = Head(
            parts.headers,
            parts.by_name,
            raw,
            version=b"HTTP/" + self.parser.get_http_version().encode(),
            status=status,
            reason=self.reason,
        )
        if status < 200:
            if status == 101:
                if exchange.upgrade is None:
                    raise BadRequest(502, "bad-upstream-response", "a 101 nobody asked for")
                self._answer_started(exchange)
                self.body = "none"
                self.out.append(client_head(response, "upgrade", close=False))
            else:  # an interim answer (100 Continue, 103 Early Hints): passed on, the final one follows
                self.interim = True
                self.out.append(raw or client_head(response, "none", close=False))
            return
        self._answer_started(exchange)
        if exchange.is_head or status in _NO_BODY_STATUS:
            body = "none"
        elif b"chunked" in response.tokens(b"transfer-encoding"):
            body = "chunked"
        elif b"content-length" in parts.by_name:
            body = "length"
        else:
            body = "eof"
        self.body = body
        close = exchange.client_close or body == "eof" or exchange.upgrade is not None
        exchange.client_close = close
        head = client_head(response, body, close=close)
        chunk = parts.chunk
        if head is raw and len(chunk) == len(raw) + int(parts.by_name[b"content-length"][0]):
            self.out.append(chunk)  # the whole answer came in this chunk: passed on as it is
            self.skip_body = True
        else:
            self.out.append(head)
        if exchange.is_head:
            self.complete = True
            raise _HeadAnswered

    def on_body(self, body: bytes) -> None:
        if self.skip_body:
            return
        if self.body == "chunked":
            self.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self.out.append(body)

    def on_message_complete(self) -> None:
        self.parts.fresh = False
        if self.interim:
            self.interim = False
            return
        if self.body == "chunked":
            self.out.append(b"0\r\n\r\n")
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # (llhttp forgets it once the message ends)

    # --- helpers ---------------------------------------------------------------------------------

    def _answer_started(self, exchange: Exchange) -> None:
        exchange.answered = True
        if exchange.timer is not None:
            exchange.timer.cancel()
            exchange.timer = None

    def _flush(self) -> None:
        out = self.out
        if out:
            client = self.client
            if client is not None and not client.closed:
                client.transport.write(out[0] if len(out) == 1 else b"".join(out))
            self.out = []

    def _done(self, *, reuse: bool) -> None:
        exchange, client = self.exchange, self.client
        assert exchange is not None
        assert client is not None
        self.exchange = self.client = None
        self.complete = False
        self.body = "none"
        if reuse and exchange.request_done and not exchange.pending and exchange.upgrade is None:
            self.proxy.release(self)
        else:
            self.transport.close()
        client.answered(exchange, close=exchange.client_close)

    def _broken(self, exchange: Exchange, error: Exception) -> None:
        client = self.client
        assert client is not None
        self.exchange = self.client = None
        self.transport.close()
        client.fail(exchange, 502, "bad-upstream-response", "the target's answer is not valid HTTP/1.x")

    def _upgraded(self, first: bytes) -> None:
        client = self.client
        assert client is not None
        self.exchange = self.client = None
        self.tunnel = client
        client.open_tunnel(self, first)
