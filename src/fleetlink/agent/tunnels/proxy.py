"""The built-in data path: an asyncio HTTP/1.1 reverse proxy that routes by path prefix, and a
plain TCP forwarder (``proxy_tcp``).

HTTP: the longest matching route prefix wins (a prefix matches whole path segments: ``/api``
matches ``/api`` and ``/api/x``, not ``/apix``), then the higher ``priority``; no match goes to the
tunnel's own ``local_target``. Requests are parsed strictly (``strict_http``, docs/security.md) and
routed by their normalised path. Bodies stream both ways (Content-Length, chunked, or read-to-close),
hop-by-hop headers are dropped and ``X-Forwarded-*`` added, a WebSocket (any ``Upgrade``) is passed
through after the target's ``101``, and a target that does not answer gives a 502 problem document.
Upstream connections are kept alive and reused. The data path itself is in ``proxy_http``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from http import HTTPStatus

from fleetlink.agent.tunnels.proxy_http import ClientSide, Exchange
from fleetlink.agent.tunnels.proxy_tcp import Listener, TcpForwarder
from fleetlink.agent.tunnels.proxy_upstream import UpstreamSide
from fleetlink.agent.tunnels.strict_http import normalise_target, problem_response
from fleetlink.contract.tunnels import split_host_port

__all__ = ["HttpProxy", "Route", "RouteTable", "TcpForwarder", "new_event_loop"]

MAX_IDLE_PER_TARGET = 32
#: Request paths whose normal form and route are remembered per table (then the memory starts over).
ROUTE_CACHE_SIZE = 1024
#: Refusals inside this many seconds of the last logged one are counted, not logged again.
REFUSAL_LOG_BURST_S = 60.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    prefix: str
    host: str
    port: int
    priority: int = 0

    @cached_property
    def _stem(self) -> str:
        return self.prefix if self.prefix.endswith("/") else self.prefix + "/"

    @cached_property
    def key(self) -> tuple[str, int]:
        """Where it goes, as the idle connections to its target are kept."""
        return self.host, self.port

    def matches(self, path: str) -> bool:
        return self.prefix == "/" or path == self.prefix or path.startswith(self._stem)


class RouteTable:
    """Picks a target for a request path."""

    def __init__(self, default_target: str, routes: Sequence[tuple[str, str, int]] = ()) -> None:
        host, port = split_host_port(default_target)
        self.default = Route("/", host.strip("[]"), port)
        parsed = [Route(prefix, *split_host_port(target), priority) for prefix, target, priority in routes]
        self.routes = sorted(parsed, key=lambda r: (-len(r.prefix), -r.priority))
        self._resolved: dict[bytes, tuple[bytes, Route]] = {}

    def pick(self, path: str) -> Route:
        """The route serving ``path`` (a normalised path)."""
        return next((route for route in self.routes if route.matches(path)), self.default)

    def resolve(self, target: bytes) -> tuple[bytes, Route]:
        """(the target to forward, its route) for an origin-form request ``target``, refusing what
        ``normalise_target`` refuses; what a path resolves to is remembered (the query is not part of
        it)."""
        query = target.find(b"?")
        path = target if query < 0 else target[:query]
        resolved = self._resolved.get(path)
        if resolved is None:
            forward, normal = normalise_target(path, self.pick)
            resolved = forward, self.pick(normal)
            if len(self._resolved) >= ROUTE_CACHE_SIZE:
                self._resolved.clear()
            self._resolved[path] = resolved
        forward, route = resolved
        if forward is path:
            return target, route
        return (forward if query < 0 else forward + target[query:]), route

    def targets(self) -> list[tuple[str, int]]:
        return sorted({(r.host, r.port) for r in [self.default, *self.routes]})


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop the tunnels run on: uvloop (libuv) where it is installed, about half the CPU per
    proxied request of the default loop; else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class HttpProxy(Listener):
    """Path-prefix HTTP reverse proxy; ``table`` may be swapped while it runs.

    ``refused`` counts the requests it refused, by problem code (its provider reports them with
    its health); the first refusal of a burst is logged, the rest of the burst only counted.
    """

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
        self.refused: Counter[str] = Counter()
        self.clients: set[ClientSide] = set()
        #: Idle connections by target, the last released last.
        self.idle: dict[tuple[str, int], list[UpstreamSide]] = {}
        #: Runs while requests are in flight: answers 504 for those whose target is past its time.
        self.watchdog: asyncio.TimerHandle | None = None
        self._refusal_logged_at = -REFUSAL_LOG_BURST_S

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        return self._listening_on(await loop.create_server(lambda: ClientSide(self), self.host, self.port))

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        for task in list(self._tasks):
            task.cancel()
        for client in list(self.clients):
            client.transport.close()
        for idle in self.idle.values():
            for upstream in idle:
                upstream.transport.close()
        self.idle.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    def connect(self, client: ClientSide, exchange: Exchange) -> None:
        """Open a new connection to ``exchange``'s target, then hand it to ``client``."""
        task = asyncio.get_running_loop().create_task(self._connect(client, exchange))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, client: ClientSide, exchange: Exchange) -> None:
        route, key = exchange.route, exchange.route.key
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, upstream = await asyncio.get_running_loop().create_connection(
                    lambda: UpstreamSide(self, key), route.host, route.port
                )
        except (OSError, TimeoutError):
            client.fail(exchange, 502, "upstream-unavailable", f"nothing answers at {exchange.where}")
            return
        client.attach(exchange, upstream, reused=False)

    def watch(self) -> None:
        loop = asyncio.get_running_loop()
        self.watchdog = loop.call_later(min(1.0, self.response_timeout / 4), self._check_deadlines)

    def _check_deadlines(self) -> None:
        self.watchdog = None
        now = asyncio.get_running_loop().time()
        waiting = False
        for client in list(self.clients):
            exchange = client.current
            if exchange is not None and exchange.upstream is not None and not exchange.answered:
                if exchange.deadline <= now:
                    client.timed_out(exchange)
                else:
                    waiting = True
        if waiting:
            self.watch()

    # --- idle upstream connections ---------------------------------------------------------------

    def release(self, upstream: UpstreamSide) -> None:
        idle = self.idle.get(upstream.key)
        if idle is None:
            idle = self.idle[upstream.key] = []
        open_ = self._server is not None and not upstream.transport.is_closing()
        if open_ and len(idle) < MAX_IDLE_PER_TARGET:
            if upstream.reading_held:  # an idle connection still notices its target closing
                upstream.release_reading()
            idle.append(upstream)
        else:
            upstream.transport.close()

    def forget(self, upstream: UpstreamSide) -> None:
        idle = self.idle.get(upstream.key)
        if idle and upstream in idle:
            idle.remove(upstream)

    # --- refusals --------------------------------------------------------------------------------

    def refusal(self, status: int, code: str, detail: str) -> bytes:
        """The problem answer to a refused request; a refusal of the client's request is counted."""
        answer = problem_response(status, code, HTTPStatus(status).phrase, detail)
        if status >= 500 and status != 505:
            return answer
        self.refused[code] += 1
        now = time.monotonic()
        if now - self._refusal_logged_at >= REFUSAL_LOG_BURST_S:
            self._refusal_logged_at = now
            logger.warning(
                "tunnel proxy on port %s refused a request (%s: %s); %d refused since it started",
                self.port,
                code,
                detail,
                self.refused.total(),
            )
        return answer
