"""The one small interface every tunnel provider implements, and the pieces they share: a managed
subprocess whose output is read line by line (credentials redacted), and reachability checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fleetlink.agent.tunnels.config import TunnelsConfig
from fleetlink.agent.tunnels.store import TunnelSpec, TunnelStatus
from fleetlink.contract.tunnels import Health, split_host_port

REDACTED = "[redacted]"
TAIL_LINES = 50
STOP_GRACE_S = 5.0


class ProviderError(Exception):
    """A provider could not start; ``code`` is a short machine word, ``message`` is safe to report."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class ProviderExit:
    """A provider's process ended on its own."""

    returncode: int | None
    error_code: str
    error_message: str
    #: A credential the provider rejected: retrying soon will not help.
    auth_failed: bool = False


@dataclass(frozen=True)
class ProviderContext:
    spec: TunnelSpec
    config: TunnelsConfig
    #: Plaintext credential, opened from the sealed blob in memory only for this start.
    secret: str | None
    #: Private, per-tunnel directory (0700) for files a provider needs (0600 key files, configs).
    workdir: Path
    #: Where the provider sends traffic: the tunnel's target, or the local router in front of routes.
    upstream: str


class TunnelProvider(Protocol):
    """start / stop / health / public_url; ``exited`` tells the reconciler the process died."""

    @property
    def public_url(self) -> str | None: ...

    @property
    def exited(self) -> ProviderExit | None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def health(self) -> TunnelStatus: ...


async def tcp_reachable(target: str, timeout: float = 1.0) -> bool:
    """Whether something accepts a TCP connection at ``host:port``."""
    host, port = split_host_port(target)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


def redact(line: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            line = line.replace(secret, REDACTED)
    return line


class ManagedProcess:
    """One provider subprocess in its own process group; stdout and stderr read as lines."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        on_line: Callable[[str], None] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.secrets = [s for s in secrets if s]
        self.on_line = on_line
        self.cwd = cwd
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError as error:
            raise ProviderError("binary_missing", f"cannot run {self.argv[0]}: {error.strerror}") from None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        while raw := await self._process.stdout.readline():
            line = redact(raw.decode("utf-8", "replace").rstrip("\r\n"), self.secrets)
            self.tail.append(line)
            if self.on_line is not None:
                self.on_line(line)
        await self._process.wait()

    async def wait_output(self) -> None:
        """Until the process ended and its output was read."""
        if self._reader is not None:
            await self._reader

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            await self._settle()
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(process.wait(), grace_s)
                break
            except TimeoutError:
                continue
        await self._settle()

    async def _settle(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)

    def last_error(self, markers: Sequence[str] = ("ERR", "error", "Error", "failed")) -> str:
        """The last output line that looks like an error, else the last line."""
        for line in reversed(self.tail):
            if any(marker in line for marker in markers):
                return line[-1000:]
        return self.tail[-1][-1000:] if self.tail else f"{os.path.basename(self.argv[0])} exited"


def down(code: str, message: str, public_url: str | None = None) -> TunnelStatus:
    return TunnelStatus(Health.DOWN, public_url, code, message[:1000])


def write_private(path: Path, text: str) -> Path:
    """Write a file only this user can read (created 0600 before any byte is written)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path
