"""The self_hosted proxy's HTTP data path, target side: one protocol per connection to a target,
parsing the target's answers with llhttp and passing them on to the client they are for."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

import httptools

from fleetlink.agent.tunnels.proxy_http import Exchange, Parsing, UnsolicitedMessage, half_close
from fleetlink.agent.tunnels.strict_http import HOP_BY_HOP, BadRequest, Head

if TYPE_CHECKING:
    from fleetlink.agent.tunnels.proxy import HttpProxy
    from fleetlink.agent.tunnels.proxy_http import ClientSide

_NO_BODY_STATUS = frozenset({204, 304})


class _HeadAnswered(Exception):
    """From a callback: the answer to a HEAD request ends with its head (llhttp cannot be told so)."""


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


def _reason(raw: bytes, status: int) -> bytes:
    """The reason phrase of a status line as received; the standard one when the head came in parts."""
    if raw:
        parts = raw[: raw.index(b"\r\n")].split(b" ", 2)
        return parts[2] if len(parts) == 3 else b""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class UpstreamSide(Parsing):
    """One connection to a target: parses its answers and passes them to the client they are for."""

    NOTED = HOP_BY_HOP | {b"content-length"}

    __slots__ = (
        "body",
        "client",
        "exchange",
        "interim",
        "keep_alive",
        "key",
        "out",
        "parser",
        "proxy",
        "reading_held",
        "skip_body",
        "tunnel",
    )

    def __init__(self, proxy: HttpProxy, key: tuple[str, int]) -> None:
        super().__init__()
        self.proxy, self.key = proxy, key
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.client: ClientSide | None = None
        self.tunnel: ClientSide | None = None
        self.out: list[bytes] = []  # answer bytes for the client, written after each chunk
        self.body = "none"
        self.skip_body = self.interim = self.keep_alive = self.reading_held = False

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for, on an idle connection
            self.transport.close()
            return
        self.chunk = data
        self.fresh = self.between
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._flush()
            self._upgraded(data[upgrade.args[0] :])
            return
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, _HeadAnswered | UnsolicitedMessage) or self.complete:
                self._flush()
                self._done(reuse=False)
            else:
                self._broken(exchange)
            return
        finally:
            self.chunk = b""
        if self.out:
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
        if self.tunnel is None:
            return False
        return half_close(self.tunnel)

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
            client.answered(exchange, close=True)
        else:
            client.fail(exchange, 502, "upstream-unavailable", f"{exchange.where} closed the connection")

    def hold_reading(self) -> None:
        """The client reads slower than this target answers: stop reading until it catches up."""
        if not self.reading_held and not self.transport.is_closing():
            self.reading_held = True
            self.transport.pause_reading()

    def release_reading(self) -> None:
        if self.reading_held:
            self.reading_held = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def abandon(self) -> None:
        """The client went away or gave up mid-exchange: this connection is not reusable."""
        self.exchange = self.client = None
        self.transport.close()

    # --- llhttp callbacks ------------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self.in_head = False
        exchange, parser, by_name = self.exchange, self.parser, self.by_name
        assert exchange is not None
        status = parser.get_status_code()
        chunk, end = self.chunk, self.head_end()
        if (
            end
            and chunk.startswith(b"HTTP/1.1 ")
            and status >= 200
            and len(by_name) == 1  # a Content-Length, and no other header the proxy acts on
            and b"content-length" in by_name
            and not (exchange.client_close or exchange.is_head or exchange.upgrade)
            and status not in _NO_BODY_STATUS
        ):  # the short path: the target's head as it came
            exchange.answered = True
            self.body = "length"
            if len(chunk) == end + int(by_name[b"content-length"][0]):
                self.out.append(chunk)  # the whole answer is in this chunk: passed on as it is
                self.skip_body = True
            else:
                self.out.append(chunk[:end])
            return
        raw = chunk[:end]
        response = Head(
            self.headers,
            by_name,
            raw,
            version=b"HTTP/" + parser.get_http_version().encode(),
            status=status,
            reason=_reason(raw, status),
        )
        if status < 200:
            self._interim(exchange, response)
            return
        exchange.answered = True
        if exchange.is_head or status in _NO_BODY_STATUS:
            body = "none"
        elif b"chunked" in response.tokens(b"transfer-encoding"):
            body = "chunked"
        elif b"content-length" in by_name:
            body = "length"
        else:
            body = "eof"
        self.body = body
        close = exchange.client_close or body == "eof" or exchange.upgrade is not None
        exchange.client_close = close
        self.out.append(client_head(response, body, close=close))
        if exchange.is_head:
            self.complete = True
            raise _HeadAnswered

    def _interim(self, exchange: Exchange, response: Head) -> None:
        """A 1xx: a 101 to an upgrade request, or one passed on before the final answer."""
        if response.status == 101:
            if exchange.upgrade is None:
                raise BadRequest(502, "bad-upstream-response", "a 101 nobody asked for")
            exchange.answered = True
            self.body = "none"
            self.out.append(client_head(response, "upgrade", close=False))
        else:  # 100 Continue, 103 Early Hints: passed on, the final answer follows
            self.interim = True
            self.out.append(response.raw or client_head(response, "none", close=False))

    def on_body(self, body: bytes) -> None:
        if self.skip_body:
            return
        if self.body == "chunked":
            self.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self.out.append(body)

    def on_message_complete(self) -> None:
        self.between = True
        self.skip_body = False
        if self.interim:
            self.interim = False
            return
        if self.body == "chunked":
            self.out.append(b"0\r\n\r\n")
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # (llhttp forgets it once the message ends)

    # --- helpers ---------------------------------------------------------------------------------

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

    def _broken(self, exchange: Exchange) -> None:
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
