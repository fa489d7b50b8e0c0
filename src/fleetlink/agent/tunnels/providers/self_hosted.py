"""``self_hosted``: the built-in proxy (HTTP by path prefix, or plain TCP) on this node, made
reachable from outside by an OpenSSH reverse forward to a relay host the user owns, when one is
configured (``ssh -N -R bind:port:127.0.0.1:listener``)."""

from __future__ import annotations

import asyncio
import re

from fleetlink.agent.tunnels.config import RelayConfig
from fleetlink.agent.tunnels.providers.base import (
    ManagedProcess,
    ProviderContext,
    ProviderExit,
    down,
    tcp_reachable,
)
from fleetlink.agent.tunnels.proxy import HttpProxy, RouteTable, TcpForwarder
from fleetlink.agent.tunnels.store import TunnelStatus
from fleetlink.contract.tunnels import Health, Mode

_FORWARD_OK = re.compile(r"remote forward success for: listen (?:(?P<host>[^ ,]*):)?(?P<port>\d+)")
_FORWARD_FAILED = re.compile(r"remote forward failure|Error: remote port forwarding failed")
_ALLOCATED = re.compile(r"Allocated port (?P<port>\d+) for remote forward")


def ssh_argv(relay: RelayConfig, remote_port: int, local_port: int) -> list[str]:
    """The reverse-forward command: no shell, no user config, strict host keys, keepalives, and
    exit (so the agent restarts it) when the forward cannot be set up."""
    return [
        relay.ssh_binary,
        "-N",
        "-v",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        f"ServerAliveInterval={relay.keepalive_s}",
        "-o",
        "ServerAliveCountMax=3",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={relay.known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-i",
        str(relay.identity_file),
        "-p",
        str(relay.port),
        "-R",
        f"{relay.remote_bind}:{remote_port}:127.0.0.1:{local_port}",
        f"{relay.user}@{relay.host}",
    ]


def _ssh_failure(process: ManagedProcess) -> ProviderExit:
    text = "\n".join(process.tail)
    if "Permission denied" in text:
        return ProviderExit(
            process.returncode,
            "relay_auth_failed",
            "the relay refused this agent's SSH key",
            auth_failed=True,
        )
    if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return ProviderExit(
            process.returncode,
            "relay_host_key",
            "the relay's host key is not the one in known_hosts",
            auth_failed=True,
        )
    if _FORWARD_FAILED.search(text):
        return ProviderExit(process.returncode, "relay_forward_failed", "the relay refused the port forward")
    lines = [line for line in process.tail if not line.startswith("debug")]
    return ProviderExit(process.returncode, "relay_exited", (lines[-1] if lines else "ssh exited")[:1000])


class SelfHostedProvider:
    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        spec = context.spec
        port = context.config.listen_ports.get(spec.name, 0)
        self.server: HttpProxy | TcpForwarder
        if spec.mode is Mode.TCP:
            self.server = TcpForwarder(spec.local_target, context.config.listen_host, port)
        else:
            self.server = HttpProxy(self.table(), context.config.listen_host, port)
        self.relay = context.config.relay
        self.ssh: ManagedProcess | None = None
        self.remote_port: int | None = None
        self._forwarded = asyncio.Event()

    def table(self) -> RouteTable:
        spec = self.context.spec
        return RouteTable(
            spec.local_target, [(r.path_prefix, r.local_target, r.priority) for r in spec.routes if r.enabled]
        )

    @property
    def refused_requests(self) -> int:
        """Requests the proxy refused since it started (by code in ``server.refused``)."""
        return self.server.refused.total() if isinstance(self.server, HttpProxy) else 0

    @property
    def scheme(self) -> str:
        return "tcp" if self.context.spec.mode is Mode.TCP else "http"

    @property
    def public_url(self) -> str | None:
        if self.relay is None:
            host, port = self.server.address
            return f"{self.scheme}://{host}:{port}" if self.server.listening else None
        if self.remote_port is None:
            return None
        return f"{self.scheme}://{self.relay.public_host or self.relay.host}:{self.remote_port}"

    @property
    def exited(self) -> ProviderExit | None:
        if self.ssh is None or self.ssh.returncode is None:
            return None
        return _ssh_failure(self.ssh)

    async def start(self) -> None:
        await self.server.start()
        if self.relay is None:
            return
        wanted = self.relay.ports.get(self.context.spec.name, 0)
        self.ssh = ManagedProcess(ssh_argv(self.relay, wanted, self.server.port), on_line=self._on_ssh_line)
        await self.ssh.start()

    def _on_ssh_line(self, line: str) -> None:
        match = _ALLOCATED.search(line) or _FORWARD_OK.search(line)
        if match and int(match["port"]) != 0:
            self.remote_port = int(match["port"])
            self._forwarded.set()

    async def wait_forwarded(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._forwarded.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self.ssh is not None:
            await self.ssh.stop()
        await self.server.stop()

    async def health(self) -> TunnelStatus:
        if not self.server.listening:
            return down("listener_down", "the local listener is not serving")
        if (failure := self.exited) is not None:
            return down(failure.error_code, failure.error_message)
        targets = [f"{h}:{p}" if ":" not in h else f"[{h}]:{p}" for h, p in self._targets()]
        reachable = await asyncio.gather(*(tcp_reachable(t) for t in targets))
        dead = [t for t, ok in zip(targets, reachable, strict=True) if not ok]
        url = self.public_url
        if len(dead) == len(targets):
            return TunnelStatus(
                Health.DOWN, url, "target_unreachable", f"nothing answers at {', '.join(dead)}"
            )
        if dead:
            return TunnelStatus(
                Health.DEGRADED, url, "target_unreachable", f"nothing answers at {', '.join(dead)}"
            )
        if self.relay is not None and self.remote_port is None:
            return TunnelStatus(
                Health.DEGRADED, url, "relay_connecting", "the relay forward is not set up yet"
            )
        return TunnelStatus(Health.UP, url)

    def _targets(self) -> list[tuple[str, int]]:
        if isinstance(self.server, TcpForwarder):
            return [self.server.target]
        return self.server.table.targets()
