"""Shared shape of the providers that run an external agent binary (cloudflared, ngrok, tailscale)."""

from __future__ import annotations

import socket

import httpx

from fleetlink.agent.tunnels.providers.base import (
    ManagedProcess,
    ProviderContext,
    ProviderError,
    ProviderExit,
    down,
    tcp_reachable,
)
from fleetlink.agent.tunnels.store import TunnelStatus
from fleetlink.contract.tunnels import Health


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 now (for a provider's local status server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: How long a provider's local status server may take to answer.
LOCAL_STATUS_TIMEOUT_S = 2.0


async def local_status(address: str, path: str) -> httpx.Response:
    """GET ``path`` from a provider's local status server at ``address`` (host:port on loopback)."""
    async with httpx.AsyncClient(timeout=LOCAL_STATUS_TIMEOUT_S) as client:
        return await client.get(f"http://{address}{path}")


class ExternalProvider:
    """One long-running provider process; subclasses say how to run it and read its output."""

    #: Its binary's name in ``TunnelsConfig.binaries``.
    binary_name: str
    #: Output fragments that mean the provider refused the credential.
    auth_markers: tuple[str, ...] = ()

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        self.process: ManagedProcess | None = None
        self._public_url: str | None = None
        self.error: str | None = None

    @property
    def binary(self) -> str:
        return self.context.config.binaries[self.binary_name]

    def required_secret(self, what: str) -> str:
        """The tunnel's credential; ``secret_missing`` (the provider needs ``what``) when it has none."""
        if not self.context.secret:
            raise ProviderError("secret_missing", f"{self.name} needs {what}")
        return self.context.secret

    @property
    def public_url(self) -> str | None:
        return self._public_url

    @property
    def exited(self) -> ProviderExit | None:
        process = self.process
        if process is None or process.returncode is None:
            return None
        message = self.error or process.last_error()
        auth = any(marker in "\n".join(process.tail) for marker in self.auth_markers)
        return ProviderExit(
            process.returncode,
            f"{self.name}_auth_failed" if auth else f"{self.name}_exited",
            message,
            auth_failed=auth,
        )

    @property
    def name(self) -> str:
        return type(self).__name__.removesuffix("Provider").lower()

    def on_line(self, line: str) -> None:
        """Read one line of the provider's output (URL, errors)."""

    async def launch(self, argv: list[str], env: dict[str, str]) -> None:
        secrets = [self.context.secret] if self.context.secret else []
        self.process = ManagedProcess(
            argv, env=env, secrets=secrets, on_line=self.on_line, cwd=self.context.workdir
        )
        await self.process.start()

    async def stop(self) -> None:
        if self.process is not None:
            await self.process.stop()

    async def target_status(self, status: TunnelStatus) -> TunnelStatus:
        """Degrade an otherwise-up status when the local service does not answer."""
        if status.health is Health.UP and not await tcp_reachable(self.context.upstream):
            return TunnelStatus(
                Health.DEGRADED,
                status.public_url,
                "target_unreachable",
                f"nothing answers at {self.context.upstream}",
            )
        return status

    def not_running(self) -> TunnelStatus | None:
        if self.process is None or not self.process.running:
            failure = self.exited
            return down(
                failure.error_code if failure else "not_running",
                failure.error_message if failure else f"{self.binary} is not running",
            )
        return None
