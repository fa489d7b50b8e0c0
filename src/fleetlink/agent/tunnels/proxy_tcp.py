"""``mode: tcp``: a plain TCP forwarder, every connection spliced to one target."""

from __future__ import annotations

import asyncio
import contextlib

from fleetlink.contract.tunnels import split_host_port

COPY_CHUNK = 64 * 1024


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until EOF, then half-close the other side."""
    try:
        while data := await reader.read(COPY_CHUNK):
            writer.write(data)
            await writer.drain()
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


class Listener:
    """A listening socket on ``host``:``port`` (port 0: a free one, known once started)."""

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

    def _listening_on(self, server: asyncio.Server) -> tuple[str, int]:
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        return self.address


class TcpForwarder(Listener):
    """Splices every connection it accepts to ``target``."""

    def __init__(
        self, target: str, host: str = "127.0.0.1", port: int = 0, connect_timeout: float = 5.0
    ) -> None:
        super().__init__(host, port)
        self.target = split_host_port(target)
        self.connect_timeout = connect_timeout

    async def start(self) -> tuple[str, int]:
        return self._listening_on(await asyncio.start_server(self._accept, self.host, self.port))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(*self.target), self.connect_timeout)
            await splice((reader, writer), upstream)
        except (ConnectionError, OSError, TimeoutError):
            pass
        except asyncio.CancelledError:  # stop(): end quietly, the server is going away
            pass
        finally:
            self._tasks.discard(task)
            _close(writer)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
