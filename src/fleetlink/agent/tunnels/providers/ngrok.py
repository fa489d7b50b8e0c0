"""``ngrok``: ``ngrok http|tcp TARGET --log stdout --log-format json --config <private file>`` with
the authtoken in ``NGROK_AUTHTOKEN``; the public URL comes from the ``started tunnel`` log line,
health from the agent's local API (``/api/tunnels`` on the ``web_addr`` set in that config)."""

from __future__ import annotations

import json

import httpx

from fleetlink.agent.tunnels.providers.base import write_private
from fleetlink.agent.tunnels.providers.external import ExternalProvider, free_loopback_port, local_status
from fleetlink.agent.tunnels.store import TunnelStatus
from fleetlink.contract.tunnels import Health, Mode


class NgrokProvider(ExternalProvider):
    binary_name = "ngrok"
    auth_markers = ("authentication failed", "ERR_NGROK_105", "ERR_NGROK_107")

    async def start(self) -> None:
        authtoken = self.required_secret("an authtoken")
        self.web_addr = f"127.0.0.1:{free_loopback_port()}"
        config = write_private(
            self.context.workdir / "ngrok.yml",
            f'version: "3"\nagent:\n  web_addr: {self.web_addr}\n  update_check: false\n',
        )
        spec = self.context.spec
        argv = [
            self.binary,
            "tcp" if spec.mode is Mode.TCP else "http",
            self.context.upstream,
            "--log",
            "stdout",
            "--log-format",
            "json",
            "--config",
            str(config),
        ]
        if spec.public_hostname:
            argv += ["--url", f"https://{spec.public_hostname}"]
        await self.launch(argv, {"NGROK_AUTHTOKEN": authtoken})

    def on_line(self, line: str) -> None:
        try:
            entry = json.loads(line)
        except ValueError:
            if line.startswith("ERROR:") and self.error is None:
                self.error = line[-1000:]
            return
        if not isinstance(entry, dict):
            return
        if entry.get("msg") == "started tunnel" and isinstance(entry.get("url"), str):
            self._public_url = entry["url"]
        if entry.get("lvl") in ("eror", "crit") and entry.get("err"):
            self.error = " ".join(str(entry["err"]).split())[:1000]

    async def health(self) -> TunnelStatus:
        if (stopped := self.not_running()) is not None:
            return stopped
        try:
            tunnels = (await local_status(self.web_addr, "/api/tunnels")).json().get("tunnels", [])
        except (httpx.HTTPError, ValueError, AttributeError):
            return TunnelStatus(
                Health.DEGRADED, self.public_url, "starting", "ngrok's local API does not answer yet"
            )
        urls = [t.get("public_url") for t in tunnels if isinstance(t, dict) and t.get("public_url")]
        if not urls:
            return TunnelStatus(Health.DEGRADED, None, "no_tunnel", "ngrok runs but has no tunnel online")
        self._public_url = self._public_url if self._public_url in urls else urls[0]
        return await self.target_status(TunnelStatus(Health.UP, self.public_url))
