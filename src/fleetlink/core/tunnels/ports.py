"""Ports of the tunnel use cases: storage (adapter: fleetlink.store.tunnels) and sealing
(adapter: fleetlink.auth.sealing)."""

from __future__ import annotations

from typing import Protocol

from fleetlink.core.audit import AuditRecord
from fleetlink.core.entities import Page
from fleetlink.core.tunnels.model import Provider, TunnelEvent, TunnelRecord


class Sealer(Protocol):
    def __call__(self, recipient_public_key_pem: str, plaintext: bytes, *, context: bytes) -> str:
        """Seal ``plaintext`` to the key's holder, bound to ``context``; ValueError if the key is unusable."""
        ...


class TunnelRepository(Protocol):
    def create(self, record: TunnelRecord, events: list[TunnelEvent], audit: AuditRecord) -> None:
        """Store a new tunnel (and its events); Conflict if the agent has one of that provider and name."""
        ...

    def get(self, tunnel_id: str) -> TunnelRecord | None:
        """A tunnel by id alone (operators), read consistently."""
        ...

    def get_of_agent(self, agent_id: str, tunnel_id: str) -> TunnelRecord | None:
        """One of this agent's tunnels (None for another agent's), read consistently."""
        ...

    def of_agent(self, agent_id: str) -> list[TunnelRecord]:
        """Every tunnel of an agent, read consistently (its desired state)."""
        ...

    def replace(
        self, before: TunnelRecord, after: TunnelRecord, events: list[TunnelEvent], audit: AuditRecord
    ) -> bool:
        """A change of desired state: store ``after`` if the tunnel is still ``before`` and move the
        agent's tunnels version on; False when it changed meanwhile."""
        ...

    def delete(self, record: TunnelRecord, audit: AuditRecord) -> bool:
        """Remove the tunnel and move the agent's tunnels version on; False if it was gone."""
        ...

    def report_status(self, before: TunnelRecord, after: TunnelRecord) -> bool:
        """Store the agent's report if the tunnel is still ``before`` (desired state untouched)."""
        ...

    def list_fleet(
        self, *, provider: Provider | None, enabled: bool | None, limit: int, cursor: str | None
    ) -> Page[TunnelRecord]: ...

    def add_events(self, events: list[TunnelEvent]) -> None:
        """Store events (a resent one overwrites itself: ids are derived from the content)."""
        ...

    def events_of(self, tunnel_id: str, *, now_ms: int, limit: int, cursor: str | None) -> Page[TunnelEvent]:
        """A tunnel's unexpired events, newest first."""
        ...

    def fleet_events(
        self, *, errors_only: bool, since_ms: int, now_ms: int, limit: int, cursor: str | None
    ) -> Page[TunnelEvent]:
        """Every tunnel's unexpired events (or only errors) since ``since_ms``, newest first."""
        ...
