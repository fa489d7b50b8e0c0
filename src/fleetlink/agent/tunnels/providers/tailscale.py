"""``tailscale``: logs in with ``tailscale up --auth-key=file:<0600 file>`` when the node is logged
out and an auth key was set, then runs ``tailscale serve`` (tailnet only) or ``tailscale funnel``
(internet) in the foreground; the public URL comes from its banner, health from ``tailscale
status --json``."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from fleetlink.agent.tunnels.providers.base import ProviderError, redact, write_private
from fleetlink.agent.tunnels.providers.external import ExternalProvider
from fleetlink.agent.tunnels.store import TunnelStatus
from fleetlink.contract.tunnels import Health, Mode, split_host_port

_URL = re.compile(r"^((?:https?|tcp)://\S+)")
COMMAND_TIMEOUT_S = 60.0


class TailscaleProvider(ExternalProvider):
    binary_name = "tailscale"
    auth_markers = ("invalid key", "not logged in")

    def _cli(self, *args: str) -> list[str]:
        socket = self.context.config.tailscale_socket
        return [self.binary, *(["--socket", socket] if socket else []), *args]

    async def _run(self, *args: str) -> tuple[int, str]:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._cli(*args),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as error:
            raise ProviderError("binary_missing", f"cannot run {self.binary}: {error.strerror}") from None
        try:
            output, _ = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            raise ProviderError("tailscale_timeout", f"tailscale {args[0]} did not finish") from None
        secrets = [self.context.secret] if self.context.secret else []
        return int(process.returncode or 0), redact(output.decode("utf-8", "replace"), secrets)

    async def status(self) -> dict[str, Any]:
        code, output = await self._run("status", "--json")
        try:
            status = json.loads(output)
        except ValueError:
            status = None
        if code != 0 or not isinstance(status, dict):
            raise ProviderError("tailscale_unavailable", output.strip()[-500:] or "tailscale status failed")
        return status

    async def start(self) -> None:
        state = (await self.status()).get("BackendState")
        if state != "Running":
            if not self.context.secret:
                raise ProviderError(
                    "tailscale_auth_failed",
                    f"tailscale is not logged in ({state}) and the tunnel has no auth key",
                )
            key_file = write_private(self.context.workdir / "authkey", self.context.secret)
            try:
                code, output = await self._run("up", f"--auth-key=file:{key_file}")
            finally:
                key_file.unlink(missing_ok=True)
            if code != 0:
                raise ProviderError("tailscale_auth_failed", output.strip()[-500:] or "tailscale up failed")
        spec = self.context.spec
        verb = "funnel" if self.context.config.tailscale_funnel else "serve"
        if spec.mode is Mode.TCP:
            port = split_host_port(self.context.upstream)[1]
            args = [verb, f"--tcp={port}", f"tcp://{self.context.upstream}"]
        else:
            args = [verb, "--https=443", f"http://{self.context.upstream}"]
        await self.launch(self._cli(*args), {})

    def on_line(self, line: str) -> None:
        if (match := _URL.match(line.strip())) and self._public_url is None:
            self._public_url = match[1]
        elif line.startswith(("error", "Tailscale is stopped")):
            self.error = line[-1000:]

    async def health(self) -> TunnelStatus:
        if (stopped := self.not_running()) is not None:
            return stopped
        try:
            status = await self.status()
        except ProviderError as error:
            return TunnelStatus(Health.DOWN, self.public_url, error.code, error.message)
        state = status.get("BackendState")
        online = isinstance(status.get("Self"), dict) and status["Self"].get("Online")
        if state != "Running" or not online:
            return TunnelStatus(Health.DOWN, self.public_url, "tailscale_offline", f"tailscale is {state}")
        if self.public_url is None:
            return TunnelStatus(
                Health.DEGRADED, None, "starting", "tailscale serve has not announced its URL"
            )
        return await self.target_status(TunnelStatus(Health.UP, self.public_url))
