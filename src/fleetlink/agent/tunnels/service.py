"""``TunnelsService``: the tunnels capability inside ``fleetlink agent run`` (the daemon's
``Service`` interface). Its providers live on one asyncio loop in a thread of its own; ``step``
fetches desired state when the heartbeat said it changed, runs the reconciler's round and flushes
the outbox (status reports and event batches) to the cloud, which may be unreachable: nothing
owed is dropped until the cloud took it (or said the tunnel no longer exists)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fleetlink.agent.daemon import BaseService
from fleetlink.agent.db import now_ms
from fleetlink.agent.tunnels.config import TunnelsConfig, load_config
from fleetlink.agent.tunnels.proxy import new_event_loop
from fleetlink.agent.tunnels.reconciler import ProviderFactory, Reconciler, SecretOpener
from fleetlink.agent.tunnels.store import EventRecord, TunnelStore
from fleetlink.client.http import FleetlinkApiError, FleetlinkClientError, is_transient
from fleetlink.contract.tunnels import (
    MAX_EVENTS_PER_REQUEST,
    DesiredState,
    EventIn,
    EventsBatch,
    Health,
    Provider,
    StatusReport,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: How long after a failed desired-state fetch the next one is tried.
FETCH_RETRY_S = 5.0
STOP_TIMEOUT_S = 30.0


class TunnelApi(Protocol):
    """The agent routes of the tunnel API (the agent's HTTP client implements them)."""

    def get_desired_state(self, agent_id: str) -> DesiredState: ...

    def put_status(self, tunnel_id: str, report: StatusReport) -> None: ...

    def post_events(self, tunnel_id: str, batch: EventsBatch) -> None: ...


class _Ack(Protocol):
    @property
    def tunnels_version(self) -> int: ...


def _gone(error: Exception) -> bool:
    """The cloud will never take this (the tunnel is gone, or the body is refused for good)."""
    return isinstance(error, FleetlinkApiError) and error.status in (400, 403, 404, 409, 410, 422)


class TunnelsService(BaseService):
    name = "tunnels"

    def __init__(
        self,
        *,
        agent_id: str,
        api: TunnelApi,
        store: TunnelStore,
        state_dir: Path,
        open_secret: SecretOpener | None = None,
        config: TunnelsConfig | None = None,
        factories: Mapping[Provider, ProviderFactory] | None = None,
        on_event: Callable[[EventRecord], None] | None = None,
    ) -> None:
        super().__init__()
        self.agent_id = agent_id
        self.api = api
        self.store = store
        if on_event is not None:
            store.on_event = on_event
        self.state_dir = state_dir
        self.open_secret = open_secret
        self.config = config
        self.factories = factories
        self.reconciler: Reconciler | None = None
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tunnels-loop", daemon=True)
        self._version: int | None = None
        self._fetch_wanted = True
        self._fetch_after = 0.0
        self._stopped = False

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- Service ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bring back the tunnels the store holds (works with the cloud unreachable)."""
        config = self.config or load_config(self.state_dir)
        self.config = config
        self.store.prune_events(now_ms() - config.event_retention_days * 86_400_000)
        self._thread.start()
        self.reconciler = Reconciler(
            self.store,
            config,
            self.state_dir / "tunnels",
            open_secret=self.open_secret,
            factories=self.factories,
        )
        self._run(self.reconciler.recover())

    def step(self) -> float:
        assert self.reconciler is not None
        assert self.config is not None
        wait = self.config.health_interval_s
        if self._fetch_wanted and self._loop.time() >= self._fetch_after:
            wait = min(wait, self.fetch())
        wait = min(wait, self._run(self.reconciler.check()))
        self.flush()
        return wait

    def on_heartbeat(self, ack: _Ack) -> None:
        version = ack.tunnels_version
        if version != self._version:
            self._version = version
            self._fetch_wanted = True
            self._fetch_after = 0.0

    def heartbeat_metrics(self) -> dict[str, float]:
        if self.store is None or self.reconciler is None:
            return {}
        tunnels = self.store.tunnels()
        return {
            "tunnels": float(len(tunnels)),
            "tunnels_up": float(sum(1 for t in tunnels if t.status.health is Health.UP)),
            "tunnels_running": float(self.reconciler.summary()["running"]),
            "tunnels_outbox": float(self.store.outbox_size()),
            "tunnels_refused": float(self.reconciler.refused_requests()),
        }

    def stop(self, *, urgent: bool = False) -> None:
        """Stop every provider (urgent: without waiting on the cloud), then the loop (the store stays
        open: whoever handed it in closes it)."""
        if self._stopped:
            return
        self._stopped = True
        if self.reconciler is not None and self._thread.is_alive():
            try:
                self._run(self.reconciler.shutdown(), timeout=5.0 if urgent else STOP_TIMEOUT_S)
            except FutureTimeout:
                logger.warning("tunnel providers did not stop in time")
            if not urgent:
                self.flush()
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    # --- the cloud side -------------------------------------------------------------------------------

    def fetch(self) -> float:
        """Fetch desired state and converge; on failure try again later (answers the wait)."""
        assert self.reconciler is not None
        try:
            desired = self.api.get_desired_state(self.agent_id)
        except FleetlinkClientError as error:
            logger.warning("desired tunnel state not fetched: %s", error)
            self._fetch_after = self._loop.time() + FETCH_RETRY_S
            return FETCH_RETRY_S
        self._fetch_wanted = False
        if desired.tunnels_version is not None:
            self._version = desired.tunnels_version
        self._run(self.reconciler.apply(desired.tunnels))
        return 0.0

    def flush(self) -> int:
        """Send owed status reports and events; stops at the first transient failure. Answers how many
        items the cloud took."""
        assert self.store is not None
        sent = 0
        try:
            for tunnel in self.store.owed_statuses():
                report = StatusReport.model_validate(tunnel.status, from_attributes=True)
                try:
                    self.api.put_status(tunnel.spec.tunnel_id, report)
                except FleetlinkClientError as error:
                    if not _gone(error):
                        raise
                self.store.mark_status_sent(tunnel.spec.tunnel_id, tunnel.status_seq)
                sent += 1
            by_tunnel: dict[str, list[Any]] = defaultdict(list)
            for event in self.store.owed_events():
                assert event.tunnel_id is not None
                by_tunnel[event.tunnel_id].append(event)
            for tunnel_id, events in by_tunnel.items():
                for start in range(0, len(events), MAX_EVENTS_PER_REQUEST):
                    chunk = events[start : start + MAX_EVENTS_PER_REQUEST]
                    batch = EventsBatch(
                        events=[EventIn.model_validate(e, from_attributes=True) for e in chunk]
                    )
                    try:
                        self.api.post_events(tunnel_id, batch)
                    except FleetlinkClientError as error:
                        if not _gone(error):
                            raise
                    self.store.mark_events_sent([e.event_id for e in chunk])
                    sent += len(chunk)
        except FleetlinkClientError as error:
            level = logging.INFO if is_transient(error) else logging.WARNING
            logger.log(level, "tunnel outbox kept for later: %s", error)
        return sent
