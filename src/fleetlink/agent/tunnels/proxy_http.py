"""The self_hosted proxy's HTTP data path, client side: asyncio protocols over transports, no streams.

A ``ClientSide`` per client connection and an ``UpstreamSide`` (``proxy_upstream``) per connection
to a target, each with one llhttp parser (``httptools``) fed the bytes as they arrive. Heads are
checked in the parser's callbacks (``strict_http``) before anything is forwarded; a head goes on as
one write (the received bytes themselves where nothing in them changes), body bytes as llhttp hands
them over, and what one received chunk produces leaves in one write. Upstream connections are kept
alive and reused (``HttpProxy`` holds the idle ones). One request per client connection is in
flight; pipelined ones wait in order, the client's reading paused meanwhile.
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
    problem_response,
    request_framing,
)

if TYPE_CHECKING:
    from fleetlink.agent.tunnels.proxy import HttpProxy, Route
    from fleetlink.agent.tunnels.proxy_upstream import UpstreamSide

HEAD_LIMIT = 64 * 1024
#: Request bytes held for a target still being connected to before the client is paused.
PENDING_LIMIT = 256 * 1024
#: Request headers the proxy rewrites; a head without any keeps its header block byte for byte.
_REWRITTEN = HOP_BY_HOP | {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
#: The request headers the proxy acts on.
_NOTED = _REWRITTEN | {b"content-length", b"host"}
_PHRASES = {502: "Bad Gateway", 504: "Gateway Timeout"}
#: A head forwarded as it came: method, target, the rest from the version on (without the blank
#: line), then the forwarding headers with the client's address and Host.
_FORWARDED = b"%s %s%sx-forwarded-for: %s\r\nx-forwarded-proto: http\r\nx-forwarded-host: %s\r\n\r\n"


def head_too_large() -> BadRequest:
    return BadRequest(431, "headers-too-large", f"the request head is over {HEAD_LIMIT} bytes")


def upstream_head(
    request: Head, target: bytes, upgrade: bytes | None, framing: str, client_ip: bytes
) -> bytes:
    """The request head the target gets: hop-by-hop headers dropped, ``X-Forwarded-*`` added."""
    plain = upgrade is None and framing != "chunked"
    if plain and (raw := request.raw) and request.by_name.keys().isdisjoint(_REWRITTEN):
        fields = b" HTTP/1.1" + raw[raw.index(b"\r\n") : -2]  # the header block as it came
        return _FORWARDED % (request.method, target, fields, client_ip, request.by_name[b"host"][0])
    connection = request.tokens(b"connection")
    drop = (HOP_BY_HOP | connection if connection else HOP_BY_HOP) | {b"x-forwarded-for"}
    lines = [request.method + b" " + target + b" HTTP/1.1"]
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


class Exchange:
    """One request on its way to a target, and its answer on the way back."""

    __slots__ = (
        "answered",
        "client_close",
        "deadline",
        "framing",
        "head",
        "is_head",
        "pending",
        "pending_size",
        "request_done",
        "retried",
        "reused",
        "route",
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
        self.deadline = 0.0  # when the target must have begun answering (loop time)

    @property
    def where(self) -> str:
        route = self.route
        return f"{route.host}:{route.port}" + (f" (route {route.prefix})" if route.prefix != "/" else "")


class UnsolicitedMessage(Exception):
    """From a callback: a message began after one that had to be the last for now (a target's second
    answer to one request)."""


class Parsing(asyncio.Protocol):
    """What both sides share: the head being parsed, filled by llhttp's callbacks (``headers`` all of
    them in order, ``by_name`` the values of those named in ``NOTED``).

    ``chunk`` is the data being fed; ``fresh`` says no message ended or began earlier in it, so a
    head that begins while it holds began at the chunk's first byte and its bytes can be reused.
    """

    __slots__ = (
        "between",
        "by_name",
        "chunk",
        "complete",
        "eof",
        "fresh",
        "headers",
        "in_head",
        "transport",
        "whole",
    )

    #: The (lower-case) names of the headers this side acts on: only these are in ``by_name``.
    NOTED: frozenset[bytes]
    transport: asyncio.Transport

    def __init__(self) -> None:
        self.chunk = b""
        self.between = True  # no byte of a next message received yet
        self.fresh = False
        self.whole = False  # the message being parsed began at the first byte of ``chunk``
        self.in_head = True
        self.eof = False
        #: The message parsed must be the last one for now (a target's answer not yet passed on).
        self.complete = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.by_name: dict[bytes, list[bytes]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def on_message_begin(self) -> None:
        if self.complete:
            raise UnsolicitedMessage
        self.whole = self.fresh and self.chunk[:1] not in (b"\r", b"\n")
        self.fresh = self.between = False
        self.in_head = True
        self.headers = []
        self.by_name = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a trailer field: not forwarded (RFC 9110 §6.5.1)
        self.headers.append((name, value))
        lower = name.lower()
        if lower in self.NOTED:
            if (seen := self.by_name.get(lower)) is None:
                self.by_name[lower] = [value]
            else:
                seen.append(value)

    def head_end(self) -> int:
        """Where the head ends in ``chunk`` when the chunk began with it (its bytes are
        ``chunk[:head_end]``), else 0."""
        if not self.whole:
            return 0
        end = self.chunk.find(b"\r\n\r\n")
        return end + 4 if end >= 0 else 0


class ClientSide(Parsing):
    """One client connection: parses its requests and sends each to the target its route picks."""

    NOTED = _NOTED

    __slots__ = (
        "client_ip",
        "closed",
        "current",
        "head_bytes",
        "held",
        "loop",
        "parser",
        "parsing",
        "paused",
        "proxy",
        "queue",
        "refusal",
        "tunnel",
        "url",
        "writing_paused",
    )

    def __init__(self, proxy: HttpProxy) -> None:
        super().__init__()
        self.proxy = proxy
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.client_ip = b"unknown"
        self.current: Exchange | None = None  # the request being answered
        self.parsing: Exchange | None = None  # the request whose body is arriving
        self.queue: deque[Exchange] = deque()  # pipelined requests waiting their turn
        self.refusal: bytes | None = None  # a problem owed once the requests before it are answered
        self.tunnel: UpstreamSide | None = None  # after a 101: bytes relayed as they are
        self.held: list[bytes] | None = None  # bytes after an upgrade request, until it is answered
        self.paused: set[str] = set()
        self.writing_paused = self.closed = False
        self.head_bytes = 0  # bytes of an unfinished head received in chunks of their own

    # --- transport events ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.client_ip = (str(peer[0]) if peer else "unknown").encode()
        self.loop = asyncio.get_running_loop()
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
        self.chunk = data
        self.fresh = self.between
        if self.in_head:
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
            if self.in_head:
                self._refuse(BadRequest(400, "bad-header", f"the request head is malformed: {error}"))
            else:
                self._refuse(BadRequest(400, "bad-body", f"the request body is malformed: {error}"))
        else:
            if self.in_head and self.head_bytes > HEAD_LIMIT:
                self._refuse(head_too_large())
        self.chunk = b""
        current = self.current
        if current is not None:
            if current.pending and current.upstream is not None:
                self.flush(current)
            elif current.pending_size > PENDING_LIMIT:
                self.hold_reading("connecting")
            if self.queue:
                self.hold_reading("queue")

    def eof_received(self) -> bool:
        self.eof = True
        if self.tunnel is not None:
            return half_close(self.tunnel)
        return self.current is not None  # answer the request in flight, then close

    def pause_writing(self) -> None:
        self.writing_paused = True
        upstream = self.tunnel or (self.current.upstream if self.current else None)
        if upstream is not None:
            upstream.hold_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        upstream = self.tunnel or (self.current.upstream if self.current else None)
        if upstream is not None:
            upstream.release_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.clients.discard(self)
        if self.tunnel is not None:
            self.tunnel.transport.close()
        for exchange in (self.current, *self.queue):
            if exchange is not None and exchange.upstream is not None:
                exchange.upstream.abandon()
        self.current = None
        self.queue.clear()

    # --- llhttp callbacks ------------------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        url, noted = self.url, self.by_name
        self.url = b""  # for the next request
        method = self.parser.get_method()
        chunk, end = self.chunk, self.head_end()
        line_end = chunk.find(b"\r\n", 0, end)  # the request line ends with the version (llhttp checked it)
        hosts = noted.get(b"host")
        if (
            line_end > 0
            and chunk.startswith(b" HTTP/1.1", line_end - 9)
            and hosts is not None
            and len(noted) == 1  # one Host, and no header the proxy acts on besides: no body either
            and len(hosts) == 1
            and url[:1] == b"/"
            and b"#" not in url
            and method != b"CONNECT"
            and end <= HEAD_LIMIT
        ):  # the short path: the head forwarded as it came, the forwarding headers added
            target, route = self.proxy.table.resolve(url)
            head = _FORWARDED % (method, target, chunk[line_end - 9 : end - 2], self.client_ip, hosts[0])
            exchange = Exchange(route, head, "none", None, False, method == b"HEAD")
        else:
            exchange = self._exchange(method, url, chunk[:end])
        self.parsing = exchange
        if self.current is None:
            self.start(exchange)
        else:
            self.queue.append(exchange)

    def _exchange(self, method: bytes, url: bytes, raw: bytes) -> Exchange:
        version = self.parser.get_http_version()
        check_request(method, version, url, self.by_name)
        if len(raw) > HEAD_LIMIT or (not raw and _head_size(url, self.headers) > HEAD_LIMIT):
            raise head_too_large()
        target, route = self.proxy.table.resolve(url)
        request = Head(self.headers, self.by_name, raw, method, url, b"HTTP/" + version.encode())
        framing = request_framing(request)
        if self.parser.should_upgrade() and framing != "none":
            raise BadRequest(400, "bad-upgrade", "an upgrade request carries no body")
        connection = request.tokens(b"connection")
        client_close = b"close" in connection or (version == "1.0" and b"keep-alive" not in connection)
        upgrade = None
        if b"upgrade" in connection and (offered := request.values(b"upgrade")):
            upgrade = offered[0]
        head = upstream_head(request, target, upgrade, framing, self.client_ip)
        return Exchange(route, head, framing, upgrade, client_close, method == b"HEAD")

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
        self.in_head = self.between = True
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
        idle = self.proxy.idle.get(exchange.route.key)
        while idle:
            upstream = idle.pop()
            if not upstream.transport.is_closing():
                self.attach(exchange, upstream, reused=True)
                return
        self.proxy.connect(self, exchange)

    def attach(self, exchange: Exchange, upstream: UpstreamSide, *, reused: bool) -> None:
        proxy = self.proxy
        if self.closed or self.current is not exchange:
            proxy.release(upstream)
            return
        exchange.upstream, exchange.reused = upstream, reused
        upstream.exchange, upstream.client = exchange, self
        if self.writing_paused:
            upstream.hold_reading()
        exchange.deadline = self.loop.time() + proxy.response_timeout
        if proxy.watchdog is None:
            proxy.watch()
        self.flush(exchange)
        if self.paused:
            self.release_reading("connecting")

    def flush(self, exchange: Exchange) -> None:
        """Write the request bytes the target has not got yet, in one write."""
        pending = exchange.pending
        if pending and exchange.upstream is not None:
            exchange.upstream.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
            pending.clear()
            exchange.pending_size = 0

    def answered(self, exchange: Exchange, *, close: bool) -> None:
        """The target's answer to ``exchange`` has gone to the client: on to the next request."""
        self.current = None
        if close or not exchange.request_done:
            self.transport.close()
        elif self.queue:
            self.start(self.queue.popleft())
            if not self.queue:
                self.release_reading("queue")
        elif self.refusal is not None:
            self.transport.write(self.refusal)
            self.transport.close()
        elif self.eof:  # the client is done sending, and everything it sent is answered
            self.transport.close()

    def retry_or_fail(self, exchange: Exchange, error: str) -> None:
        """The target closed the connection before answering."""
        exchange.upstream = None
        # A kept-alive connection the target had closed: try once more if nothing was consumed.
        if exchange.reused and not exchange.retried and exchange.framing == "none":
            exchange.retried = True
            exchange.pending = [exchange.head]
            self.proxy.connect(self, exchange)
            return
        self.fail(exchange, 502, "upstream-unavailable", f"{exchange.where} closed the connection ({error})")

    def fail(self, exchange: Exchange, status: int, code: str, detail: str) -> None:
        """Answer a gateway problem for ``exchange`` (none when ``status`` is 0) and close."""
        if exchange.upstream is not None:
            exchange.upstream.abandon()
        if self.closed:
            return
        if exchange.answered:  # part of an answer went out already: the client sees it cut short
            self.transport.close()
        elif status:
            self.transport.write(problem_response(status, code, _PHRASES[status], detail))
            self.transport.close()

    def timed_out(self, exchange: Exchange) -> None:
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


def _head_size(url: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    return len(url) + sum(len(name) + len(value) + 4 for name, value in headers)


def half_close(peer: Parsing) -> bool:
    """One side of a tunnel got EOF: pass it on; once both have, close. What eof_received returns."""
    if peer.eof:
        peer.transport.close()
        return False
    if peer.transport.can_write_eof():
        peer.transport.write_eof()
    return True
