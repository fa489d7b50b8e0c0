"""``cloudflare``: ``cloudflared tunnel --no-autoupdate --metrics 127.0.0.1:PORT --url http://TARGET
run`` with the tunnel token in ``TUNNEL_TOKEN``; ready when the metrics server's ``/ready`` says
so; the public URL is the tunnel's ``public_hostname``, else the hostname of the ingress rules
cloudflared logs when it receives its remote configuration."""

from __future__ import annotations

import re

import httpx

from fleetlink.agent.tunnels.providers.external import ExternalProvider, free_loopback_port, local_status
from fleetlink.agent.tunnels.store import TunnelStatus
from fleetlink.contract.tunnels import Health

_INGRESS_HOST = re.compile(r'\\?"hostname\\?"\s*:\s*\\?"([A-Za-z0-9.-]+)\\?"')
_ERROR = re.compile(r"^\S+ (ERR|FTL) ")


class CloudflareProvider(ExternalProvider):
    binary_name = "cloudflared"
    auth_markers = ("Provided Tunnel token is not valid", "Unauthorized")

    async def start(self) -> None:
        token = self.required_secret("the tunnel token")
        if self.context.spec.public_hostname:
            self._public_url = f"https://{self.context.spec.public_hostname}"
        self.metrics = f"127.0.0.1:{free_loopback_port()}"
        argv = [
            self.binary,
            "tunnel",
            "--no-autoupdate",
            "--metrics",
            self.metrics,
            "--url",
            f"http://{self.context.upstream}",
            "run",
        ]
        await self.launch(argv, {"TUNNEL_TOKEN": token})

    def on_line(self, line: str) -> None:
        match = _INGRESS_HOST.search(line) if "Updated to new configuration" in line else None
        if match and self._public_url is None:
            self._public_url = f"https://{match[1]}"
        if _ERROR.match(line) or "not valid" in line:
            self.error = line[-1000:]

    async def health(self) -> TunnelStatus:
        if (stopped := self.not_running()) is not None:
            return stopped
        try:
            answer = await local_status(self.metrics, "/ready")
            ready = answer.json().get("readyConnections", 0) if answer.status_code == 200 else 0
        except (httpx.HTTPError, ValueError):
            return TunnelStatus(
                Health.DEGRADED,
                self.public_url,
                "starting",
                "cloudflared's metrics server does not answer yet",
            )
        if not ready:
            return TunnelStatus(
                Health.DEGRADED,
                self.public_url,
                "no_connections",
                "cloudflared has no connection to the Cloudflare edge",
            )
        return await self.target_status(TunnelStatus(Health.UP, self.public_url))
