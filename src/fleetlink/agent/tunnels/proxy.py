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
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from functools import cached_property
from http import HTTPStatus
from typing import Any

from fleetlink.agent.tunnels.proxy_http import ClientSide, UpstreamSide
from fleetlink.agent.tunnels.proxy_tcp import TcpForwarder
from fleetlink.agent.tunnels.strict_http import problem_response
from fleetlink.contract.tunnels import split_host_port

__all__ = ["HttpProxy", "Route", "RouteTable", "TcpForwarder", "new_event_loop"]

MAX_IDLE_PER_TARGET = 32
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

    def matches(self, path: str) -> bool:
        return self.prefix == "/" or path == self.prefix or path.startswith(self._stem)


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


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop the tunnels run on: uvloop (libuv) where it is installed, about half the CPU per
    proxied request of the default loop; else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class HttpProxy:
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
        self.host, self.port = host, port
        self.table = table
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.refused: Counter[str] = Counter()
        self.clients: set[ClientSide] = set()
        self._idle: dict[tuple[str, int], list[UpstreamSide]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._refusal_logged_at = -REFUSAL_LOG_BURST_S

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ClientSide(self), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.address

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for client in list(self.clients):
            client.transport.close()
        for idle in self._idle.values():
            for upstream in idle:
                upstream.transport.close()
        self._idle.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- idle upstream connections ---------------------------------------------------------------

    def idle_upstream(self, route: Route) -> UpstreamSide | None:
        idle = self._idle.get((route.host, route.port))
        while idle:
            upstream = idle.pop()
            if not upstream.transport.is_closing():
                return upstream
        return None

    def release(self, upstream: UpstreamSide) -> None:
        idle = self._idle.setdefault(upstream.key, [])
        open_ = self._server is not None and not upstream.transport.is_closing()
        if open_ and len(idle) < MAX_IDLE_PER_TARGET:
            upstream.transport.resume_reading()  # an idle connection still notices its target closing
            idle.append(upstream)
        else:
            upstream.transport.close()

    def forget(self, upstream: UpstreamSide) -> None:
        idle = self._idle.get(upstream.key)
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
