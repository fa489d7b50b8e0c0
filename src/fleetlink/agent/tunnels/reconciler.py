"""Desired state → running providers, kept that way.

``apply`` stores what the cloud wants (recording config, route and secret changes as events) and
converges; ``check`` is the periodic round: restart dead providers after an exponential backoff
with jitter (a ``restart`` event each time), and run the due health checks, recording every health
change as a status (owed to the cloud) and an event. Everything runs on one asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fleetlink.agent.tunnels.config import TunnelsConfig
from fleetlink.agent.tunnels.providers.base import (
    ProviderContext,
    ProviderError,
    ProviderExit,
    TunnelProvider,
)
from fleetlink.agent.tunnels.proxy import HttpProxy, RouteTable
from fleetlink.agent.tunnels.store import LocalTunnel, TunnelSpec, TunnelStatus, TunnelStore
from fleetlink.client.backoff import Backoff
from fleetlink.contract.tunnels import (
    DesiredTunnel,
    EventLevel,
    EventType,
    Health,
    Mode,
    Provider,
)

logger = logging.getLogger(__name__)

NEEDS_SECRET = frozenset({Provider.CLOUDFLARE, Provider.NGROK})
_HEALTH_EVENTS = {
    Health.UP: (EventLevel.INFO, EventType.HEALTH_UP),
    Health.DEGRADED: (EventLevel.WARN, EventType.HEALTH_DEGRADED),
    Health.DOWN: (EventLevel.ERROR, EventType.HEALTH_DOWN),
}


class SecretOpener(Protocol):
    """Opens a blob sealed to this agent (``fleetlink.auth.sealing.open_sealed`` with its key)."""

    def __call__(self, sealed: str, *, context: bytes) -> bytes: ...


ProviderFactory = Callable[[ProviderContext], TunnelProvider]


def default_factories() -> dict[Provider, ProviderFactory]:
    from fleetlink.agent.tunnels.providers import cloudflare, ngrok, self_hosted, tailscale

    return {
        Provider.SELF_HOSTED: self_hosted.SelfHostedProvider,
        Provider.CLOUDFLARE: cloudflare.CloudflareProvider,
        Provider.NGROK: ngrok.NgrokProvider,
        Provider.TAILSCALE: tailscale.TailscaleProvider,
    }


@dataclass
class _Running:
    spec: TunnelSpec
    sealed: str | None
    provider: TunnelProvider | None = None
    router: HttpProxy | None = None
    restarts: int = 0
    started_at: float = 0.0
    retry_at: float | None = None
    retry_reason: str = ""
    retry_delay: float = 0.0
    next_check_at: float = 0.0
    refused: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Reconciler:
    def __init__(
        self,
        store: TunnelStore,
        config: TunnelsConfig,
        workdir: Path,
        *,
        open_secret: SecretOpener | None = None,
        factories: Mapping[Provider, ProviderFactory] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.config = config
        self.workdir = workdir
        self.open_secret = open_secret
        self.factories = dict(factories) if factories is not None else default_factories()
        self.clock = clock
        self.rand = rand
        self.running: dict[str, _Running] = {}
        self._lock = asyncio.Lock()

    # --- desired state ----------------------------------------------------------------------------

    async def apply(self, desired: Sequence[DesiredTunnel]) -> None:
        """Store the cloud's desired state (events for what changed) and converge to it."""
        async with self._lock:
            known = {t.spec.tunnel_id: t for t in self.store.tunnels()}
            wanted = {t.tunnel_id: t for t in desired}
            for tunnel_id in known.keys() - wanted.keys():
                await self._stop(tunnel_id, "deleted")
                self.store.delete(tunnel_id)
            for tunnel in desired:
                self._record(TunnelSpec.of(tunnel), tunnel.sealed_secret, known)
            await self._converge()

    def _record(self, spec: TunnelSpec, sealed: str | None, known: Mapping[str, LocalTunnel]) -> None:
        before = known.get(spec.tunnel_id)
        try:
            added, removed = self.store.upsert(spec)
        except Exception as error:  # a (provider, name) pair another tunnel id holds
            self.store.add_event(
                None,
                EventLevel.ERROR,
                EventType.ERROR,
                f"tunnel {spec.name} not stored: {error}",
                {"tunnel_id": spec.tunnel_id},
            )
            return
        rotated = self.store.put_sealed_secret(spec.tunnel_id, sealed)
        if before is None:
            return
        if before.spec.config_hash != spec.config_hash or before.spec.enabled != spec.enabled:
            self.store.add_event(
                spec.tunnel_id,
                EventLevel.INFO,
                EventType.CONFIG_CHANGED,
                f"configuration of {spec.name} changed",
                {"enabled": spec.enabled},
            )
        for prefix in added:
            self.store.add_event(
                spec.tunnel_id,
                EventLevel.INFO,
                EventType.ROUTE_ADDED,
                f"route {prefix} added",
                {"path_prefix": prefix},
            )
        for prefix in removed:
            self.store.add_event(
                spec.tunnel_id,
                EventLevel.INFO,
                EventType.ROUTE_REMOVED,
                f"route {prefix} removed",
                {"path_prefix": prefix},
            )
        if rotated and sealed is not None and self.store.sealed_secret(spec.tunnel_id) is not None:
            self.store.add_event(
                spec.tunnel_id, EventLevel.INFO, EventType.SECRET_ROTATED, "provider credential replaced"
            )

    async def recover(self) -> None:
        """After a restart: run what the local store says, without waiting for the cloud."""
        async with self._lock:
            await self._converge()

    async def _converge(self) -> None:
        local = {t.spec.tunnel_id: t for t in self.store.tunnels()}
        for tunnel_id in list(self.running):
            if tunnel_id not in local:
                await self._stop(tunnel_id, "deleted")
        for tunnel_id, tunnel in local.items():
            spec, sealed = tunnel.spec, self.store.sealed_secret(tunnel_id)
            current = self.running.get(tunnel_id)
            if not spec.enabled:
                if current is not None:
                    await self._stop(tunnel_id, "disabled")
                if tunnel.status.health is not Health.UNKNOWN or tunnel.status.public_url:
                    self.store.set_status(tunnel_id, TunnelStatus(Health.UNKNOWN))
                continue
            if current is not None and current.spec == spec and current.sealed == sealed:
                continue
            if current is not None:
                await self._stop(tunnel_id, "reconfigured")
            entry = self.running[tunnel_id] = _Running(spec, sealed)
            entry.refused = self._refusal(spec)
            if entry.refused is not None:
                self.store.add_event(
                    tunnel_id,
                    EventLevel.ERROR,
                    EventType.ERROR,
                    entry.refused,
                    {"error_code": "target_not_allowed"},
                )
                self._status(tunnel_id, TunnelStatus(Health.DOWN, None, "target_not_allowed", entry.refused))
                continue
            await self._start(entry)

    def _refusal(self, spec: TunnelSpec) -> str | None:
        targets = [spec.local_target] + [r.local_target for r in spec.routes if r.enabled]
        for target in targets:
            if (reason := self.config.allow.refusal(target)) is not None:
                return f"refused to expose {target}: {reason}"
        return None

    # --- starting and stopping --------------------------------------------------------------------

    def _secret(self, entry: _Running) -> str | None:
        spec = entry.spec
        if entry.sealed is None:
            if spec.provider in NEEDS_SECRET:
                raise ProviderError("secret_missing", f"{spec.provider} needs a credential and none was set")
            return None
        if self.open_secret is None:
            raise ProviderError("secret_unreadable", "this agent has no key to open sealed secrets")
        try:
            return self.open_secret(entry.sealed, context=b"tunnel:" + spec.tunnel_id.encode()).decode()
        except Exception:  # any failure to open is reported the same way, never with the blob
            raise ProviderError(
                "secret_unreadable", "the sealed credential cannot be opened with this agent's key"
            ) from None

    async def _start(self, entry: _Running) -> None:
        spec = entry.spec
        now = self.clock()
        entry.retry_at = None
        try:
            secret = self._secret(entry)
            upstream = spec.local_target
            if (
                spec.provider is not Provider.SELF_HOSTED
                and spec.mode is Mode.HTTP
                and any(r.enabled for r in spec.routes)
            ):
                table = RouteTable(
                    spec.local_target,
                    [(r.path_prefix, r.local_target, r.priority) for r in spec.routes if r.enabled],
                )
                entry.router = HttpProxy(table, "127.0.0.1", 0)
                upstream = f"127.0.0.1:{(await entry.router.start())[1]}"
            workdir = self.workdir / spec.tunnel_id
            workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
            factory = self.factories[spec.provider]
            provider = factory(ProviderContext(spec, self.config, secret, workdir, upstream))
            entry.provider = provider
            await provider.start()
        except ProviderError as error:
            await self._failed(
                entry,
                ProviderExit(None, error.code, error.message, auth_failed=error.code.endswith("auth_failed")),
            )
            return
        except Exception as error:
            logger.exception("tunnel %s failed to start", spec.tunnel_id)
            await self._failed(
                entry, ProviderExit(None, "start_failed", f"{type(error).__name__}: {error}"[:500])
            )
            return
        entry.started_at = now
        entry.next_check_at = now
        self.store.add_event(
            spec.tunnel_id,
            EventLevel.INFO,
            EventType.TUNNEL_START,
            f"{spec.provider} tunnel {spec.name} started",
            {"provider": spec.provider, "mode": spec.mode, "restarts": entry.restarts},
        )

    async def _release(self, entry: _Running) -> None:
        provider, entry.provider = entry.provider, None
        if provider is not None:
            with contextlib.suppress(Exception):
                await provider.stop()
        if entry.router is not None:
            await entry.router.stop()
            entry.router = None

    async def _stop(self, tunnel_id: str, why: str) -> None:
        entry = self.running.pop(tunnel_id, None)
        if entry is None:
            return
        was_running = entry.provider is not None
        await self._release(entry)
        if was_running:
            self.store.add_event(
                tunnel_id,
                EventLevel.INFO,
                EventType.TUNNEL_STOP,
                f"tunnel {entry.spec.name} stopped ({why})",
                {"reason": why},
            )

    async def _failed(self, entry: _Running, failure: ProviderExit) -> None:
        """The provider died or would not start: record why, release it, schedule a restart."""
        await self._release(entry)
        entry.restarts += 1
        cap = self.config.backoff_max_s
        delay = (
            cap
            if failure.auth_failed
            else Backoff(self.config.backoff_base_s, cap, rand=self.rand).delay_s(entry.restarts)
        )
        entry.retry_at = self.clock() + delay
        entry.retry_delay = delay
        entry.retry_reason = failure.error_code
        tunnel_id = entry.spec.tunnel_id
        self.store.add_event(
            tunnel_id,
            EventLevel.ERROR,
            EventType.ERROR,
            failure.error_message,
            {"error_code": failure.error_code, "exit_code": failure.returncode},
        )
        self._status(tunnel_id, TunnelStatus(Health.DOWN, None, failure.error_code, failure.error_message))

    # --- the periodic round -----------------------------------------------------------------------

    async def check(self) -> float:
        """Restarts and health checks that are due; answers seconds until the next one is."""
        async with self._lock:
            now = self.clock()
            for entry in list(self.running.values()):
                if entry.refused is not None:
                    continue
                provider = entry.provider
                if provider is not None and (failure := provider.exited) is not None:
                    await self._failed(entry, failure)
                    continue
                if provider is None and entry.retry_at is not None and entry.retry_at <= now:
                    self.store.add_event(
                        entry.spec.tunnel_id,
                        EventLevel.WARN,
                        EventType.RESTART,
                        f"restarting {entry.spec.name} (attempt {entry.restarts})",
                        {
                            "attempt": entry.restarts,
                            "delay_ms": int(entry.retry_delay * 1000),
                            "reason": entry.retry_reason,
                        },
                    )
                    await self._start(entry)
                    continue
                if provider is not None and entry.next_check_at <= now:
                    entry.next_check_at = now + self.config.health_interval_s
                    try:
                        status = await provider.health()
                    except Exception as error:
                        status = TunnelStatus(
                            Health.UNKNOWN,
                            provider.public_url,
                            "health_check_failed",
                            f"{type(error).__name__}"[:200],
                        )
                    self._status(entry.spec.tunnel_id, status)
                    if (
                        entry.restarts
                        and status.health is Health.UP
                        and now - entry.started_at >= self.config.stable_after_s
                    ):
                        entry.restarts = 0
            return self._next_due()

    def _next_due(self) -> float:
        now = self.clock()
        due = [self.config.health_interval_s]
        for entry in self.running.values():
            if entry.provider is not None:
                due.append(entry.next_check_at - now)
            elif entry.retry_at is not None:
                due.append(entry.retry_at - now)
        return max(0.0, min(due))

    def _status(self, tunnel_id: str, status: TunnelStatus) -> None:
        before = self.store.tunnel(tunnel_id)
        if not self.store.set_status(tunnel_id, status):
            return
        if before is not None and before.status.health is status.health:
            return
        if status.health in _HEALTH_EVENTS:
            level, event_type = _HEALTH_EVENTS[status.health]
            message = f"{before.spec.name if before else tunnel_id} is {status.health}"
            if status.error_message:
                message += f": {status.error_message}"
            self.store.add_event(
                tunnel_id,
                level,
                event_type,
                message,
                {"error_code": status.error_code, "public_url": status.public_url},
            )

    async def shutdown(self) -> None:
        async with self._lock:
            for tunnel_id in list(self.running):
                await self._stop(tunnel_id, "agent stopping")

    def summary(self) -> dict[str, int]:
        live = [e for e in self.running.values() if e.provider is not None]
        return {
            "running": len(live),
            "waiting": sum(1 for e in self.running.values() if e.retry_at is not None),
        }
