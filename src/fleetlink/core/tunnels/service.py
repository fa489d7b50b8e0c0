"""Use cases of tunnels: operators declare, change and watch them; agents fetch their desired state,
report status and events; the heartbeat carries the tunnels version."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ulid import ULID

from fleetlink.core.access import Caller, require_own
from fleetlink.core.agents.liveness import liveness
from fleetlink.core.agents.model import Agent, Presence
from fleetlink.core.agents.ports import AgentRepository, AgentView
from fleetlink.core.audit import AuditRecord, changes_between, removed
from fleetlink.core.audit import created as created_fields
from fleetlink.core.clock import Clock
from fleetlink.core.copying import copied
from fleetlink.core.entities import AgentState, Page
from fleetlink.core.errors import Conflict, NotFound, Unprocessable
from fleetlink.core.heartbeat import Heartbeat, HeartbeatCaller, HeartbeatParts
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.tunnels.model import (
    EventIn,
    EventLevel,
    EventsBatch,
    EventType,
    Health,
    Mode,
    Provider,
    StatusReport,
    TunnelCreate,
    TunnelEvent,
    TunnelPatch,
    TunnelRecord,
)
from fleetlink.core.tunnels.ports import Sealer, TunnelRepository
from fleetlink.core.tunnels.rules import Change, changes, seen_health, with_ids

#: Fleet views look back this far by default (the NetworkOS views' 24 hours).
FLEET_WINDOW_MS = 24 * 3600 * 1000
#: A tunnel's page of the fleet walk for the health summary.
SUMMARY_PAGE = 100


@dataclass(frozen=True)
class TunnelView:
    """A tunnel as answered: the record, the health an operator sees, the agent's last heartbeat."""

    record: TunnelRecord
    health: Health
    last_seen_at: int | None


@dataclass(frozen=True)
class HealthCount:
    provider: Provider
    health: Health
    count: int


def secret_context(tunnel_id: str) -> bytes:
    """What a tunnel's sealed secret is bound to: it opens for this tunnel only."""
    return b"tunnel:" + tunnel_id.encode()


def event_id(tunnel_id: str, event: EventIn) -> str:
    """An ``evt_`` id derived from the event itself (its time, then a hash): a resent batch stores
    each event once."""
    digest = hashlib.sha256(
        json.dumps([tunnel_id, event.model_dump(mode="json")], sort_keys=True).encode()
    ).digest()
    return f"{IdPrefix.EVENT}_{ULID.from_bytes(event.created_at.to_bytes(6, 'big') + digest[:10])}"


class TunnelsHeartbeat:
    """The tunnels' part of the heartbeat answer: the version read with the caller (on the presence
    item the signature check reads), so it adds no request and loads no storage module."""

    def on_heartbeat(self, caller: HeartbeatCaller, command: Heartbeat, now_ms: int) -> HeartbeatParts:
        return {"tunnels_version": caller.tunnels_version}


class TunnelService:
    def __init__(
        self,
        tunnels: TunnelRepository,
        agents: AgentRepository,
        seal: Sealer,
        clock: Clock,
        heartbeat_interval_s: int,
    ) -> None:
        self._tunnels = tunnels
        self._agents = agents
        self._seal = seal
        self._clock = clock
        self._interval_s = heartbeat_interval_s

    # --- operators ---------------------------------------------------------------------------

    def create(self, agent_id: str, command: TunnelCreate, actor: str) -> TunnelView:
        """A new tunnel for an active agent; its secret sealed to the agent at once."""
        agent_view = self._agent(agent_id)
        agent = agent_view.agent
        if agent.state is not AgentState.ACTIVE:
            raise Conflict(f"agent {agent_id} is revoked", code="agent-revoked")
        now = self._clock.now_ms()
        tunnel_id = new_id(IdPrefix.TUNNEL, now)
        record = copied(
            TunnelRecord,
            command,
            tunnel_id=tunnel_id,
            agent_id=agent_id,
            routes=with_ids(command.routes, [], now),
            sealed_secret=self._sealed(agent, tunnel_id, command.secret),
            created_at=now,
            updated_at=now,
        )
        created = Change(
            EventLevel.INFO,
            EventType.CONFIG_CHANGED,
            "tunnel created",
            {"provider": record.provider.value, "name": record.name, "routes": len(record.routes)},
        )
        audit = AuditRecord.of(
            actor, "tunnel.create", tunnel_id, now, changes=created_fields(_audited(record))
        )
        self._tunnels.create(record, [self._event(record, created, now)], audit)
        return self._seen(record.model_copy(update={"version": 1}), agent_view.presence)

    def get(self, tunnel_id: str) -> TunnelView:
        return self._view(self._record(tunnel_id))

    def list_fleet(
        self,
        *,
        agent_id: str | None,
        provider: Provider | None,
        health: Health | None,
        enabled: bool | None,
        limit: int,
        cursor: str | None,
    ) -> Page[TunnelView]:
        """A page of tunnels (one agent's, or the fleet's); a health filter applies to the page, which
        may come back short, since the health seen depends on the agent's liveness."""
        if agent_id is not None:
            records = [
                r
                for r in self._tunnels.of_agent(agent_id)
                if (provider is None or r.provider is provider) and (enabled is None or r.enabled is enabled)
            ]
            page = Page[TunnelRecord](items=records, cursor=None)
        else:
            page = self._tunnels.list_fleet(provider=provider, enabled=enabled, limit=limit, cursor=cursor)
        views = self._views(page.items)
        if health is not None:
            views = [view for view in views if view.health is health]
        return Page[TunnelView](items=views, cursor=page.cursor)

    def patch(self, tunnel_id: str, command: TunnelPatch, actor: str) -> TunnelView:
        """Apply the fields given; the agent learns of it from its next heartbeat."""
        for _ in range(3):
            before = self._record(tunnel_id)
            now = self._clock.now_ms()
            given = command.model_dump(exclude_unset=True, exclude={"routes", "secret"})
            update = {k: v for k, v in given.items() if v is not None or k == "public_hostname"}
            if command.routes and before.mode is not Mode.HTTP:
                raise Unprocessable("routes need mode http", code="routes-need-http")
            if command.routes is not None:
                update["routes"] = with_ids(command.routes, before.routes, now)
            if command.secret is not None:
                update["sealed_secret"] = self._sealed(
                    self._agent(before.agent_id).agent, tunnel_id, command.secret
                )
            after = before.model_copy(update=update | {"updated_at": now})
            found = changes(before, after, command)
            if not found:
                return self._view(before)
            audit = AuditRecord.of(
                actor,
                "tunnel.patch",
                tunnel_id,
                now,
                changes=changes_between(_audited(before), _audited(after)),
            )
            if self._tunnels.replace(before, after, [self._event(after, c, now) for c in found], audit):
                return self._view(after.model_copy(update={"version": (before.version or 0) + 1}))
        raise Conflict("the tunnel keeps changing; retry", code="concurrent-update")

    def delete(self, tunnel_id: str, actor: str) -> None:
        """Remove the tunnel; its agent stops it after its next heartbeat. Idempotent only as 404."""
        record = self._record(tunnel_id)
        now = self._clock.now_ms()
        audit = AuditRecord.of(actor, "tunnel.delete", tunnel_id, now, changes=removed(_audited(record)))
        if not self._tunnels.delete(record, audit):
            raise NotFound(f"no tunnel {tunnel_id}", code="tunnel-not-found")

    def events(self, tunnel_id: str, *, limit: int, cursor: str | None) -> Page[TunnelEvent]:
        self._record(tunnel_id)
        return self._tunnels.events_of(tunnel_id, now_ms=self._clock.now_ms(), limit=limit, cursor=cursor)

    def fleet_events(
        self, *, errors_only: bool, since_ms: int | None, limit: int, cursor: str | None
    ) -> Page[TunnelEvent]:
        """Events of every tunnel, newest first, since ``since_ms`` (default: the last 24 hours)."""
        now = self._clock.now_ms()
        since = since_ms if since_ms is not None else now - FLEET_WINDOW_MS
        return self._tunnels.fleet_events(
            errors_only=errors_only, since_ms=since, now_ms=now, limit=limit, cursor=cursor
        )

    def health_summary(self) -> tuple[list[HealthCount], int]:
        """Counts by (provider, health seen) over the whole fleet, and how many are enabled."""
        counts: Counter[tuple[Provider, Health]] = Counter()
        enabled = 0
        cursor: str | None = None
        while True:
            page = self._tunnels.list_fleet(provider=None, enabled=None, limit=SUMMARY_PAGE, cursor=cursor)
            for view in self._views(page.items):
                counts[(view.record.provider, view.health)] += 1
                enabled += view.record.enabled
            if page.cursor is None:
                break
            cursor = page.cursor
        rows = [HealthCount(p, h, n) for (p, h), n in sorted(counts.items())]
        return rows, enabled

    # --- agents ------------------------------------------------------------------------------

    def desired_state(self, caller: Caller, agent_id: str) -> list[TunnelView]:
        """The agent's tunnels with routes and sealed secrets, read consistently."""
        require_own(caller, agent_id)
        return [TunnelView(r, r.health, None) for r in self._tunnels.of_agent(agent_id)]

    def report_status(self, caller: Caller, tunnel_id: str, report: StatusReport) -> tuple[TunnelView, bool]:
        """Record the agent's report of its tunnel; a report that changes nothing writes nothing.
        Answers the tunnel and whether anything was written."""
        for _ in range(3):
            before = self._own(caller, tunnel_id)
            if before.reported() == report:
                return TunnelView(before, before.health, None), False
            after = before.with_report(report, self._clock.now_ms())
            if self._tunnels.report_status(before, after):
                return TunnelView(after, after.health, None), True
        raise Conflict("the tunnel keeps changing; retry", code="concurrent-update")

    def add_events(self, caller: Caller, tunnel_id: str, batch: EventsBatch) -> int:
        """Append the agent's events (times in the future are taken as now)."""
        record = self._own(caller, tunnel_id)
        now = self._clock.now_ms()
        events = [
            copied(
                TunnelEvent,
                e,
                event_id=event_id(tunnel_id, e),
                tunnel_id=tunnel_id,
                agent_id=record.agent_id,
                created_at=min(e.created_at, now),
            )
            for e in batch.events
        ]
        self._tunnels.add_events(events)
        return len(events)

    # --- helpers -----------------------------------------------------------------------------

    def _agent(self, agent_id: str) -> AgentView:
        view = self._agents.get_view(agent_id)
        if view is None:
            raise NotFound(f"no agent {agent_id}", code="agent-not-found")
        return view

    def _record(self, tunnel_id: str) -> TunnelRecord:
        record = self._tunnels.get(tunnel_id)
        if record is None:
            raise NotFound(f"no tunnel {tunnel_id}", code="tunnel-not-found")
        return record

    def _own(self, caller: Caller, tunnel_id: str) -> TunnelRecord:
        """The caller's own tunnel; another agent's reads as absent (404), never as someone else's."""
        record = self._tunnels.get_of_agent(caller.agent_id, tunnel_id)
        if record is None:
            raise NotFound(f"no tunnel {tunnel_id} of this agent", code="tunnel-not-found")
        return record

    def _sealed(self, agent: Agent, tunnel_id: str, secret: str | None) -> str | None:
        if secret is None:
            return None
        if not agent.encryption_public_key:
            raise Conflict(
                f"agent {agent.agent_id} registered no encryption key, so no secret can be sealed to it; "
                "re-register it with an encryption_public_key",
                code="agent-has-no-encryption-key",
            )
        try:
            return self._seal(agent.encryption_public_key, secret.encode(), context=secret_context(tunnel_id))
        except ValueError as error:
            raise Conflict(
                "the agent's encryption key cannot be sealed to", code="agent-encryption-key-unusable"
            ) from error

    def _event(self, record: TunnelRecord, change: Change, now: int) -> TunnelEvent:
        return copied(
            TunnelEvent,
            change,
            event_id=new_id(IdPrefix.EVENT, now),
            tunnel_id=record.tunnel_id,
            agent_id=record.agent_id,
            data=dict(change.data),
            created_at=now,
        )

    def _view(self, record: TunnelRecord) -> TunnelView:
        view = self._agents.get_view(record.agent_id)
        presence = view.presence if view else None
        return self._seen(record, presence)

    def _views(self, records: list[TunnelRecord]) -> list[TunnelView]:
        presences = self._agents.presences(sorted({r.agent_id for r in records})) if records else {}
        return [self._seen(r, presences.get(r.agent_id)) for r in records]

    def _seen(self, record: TunnelRecord, presence: Presence | None) -> TunnelView:
        last_seen = presence.last_seen_at if presence else None
        state = liveness(last_seen, self._clock.now_ms(), self._interval_s)
        return TunnelView(record, seen_health(record, state), last_seen)


#: What an audit entry records of a tunnel (its secret only as changed, by name: ``sealed_secret``).
_AUDITED_EXCLUDE = frozenset(
    {
        "version",
        "health",
        "public_url",
        "last_heartbeat_at",
        "last_error_code",
        "last_error_message",
        "created_at",
        "updated_at",
    }
)


def _audited(record: TunnelRecord) -> dict[str, Any]:
    fields = record.model_dump(mode="json", exclude=set(_AUDITED_EXCLUDE))
    fields["routes"] = [
        {k: v for k, v in route.items() if k not in ("created_at", "updated_at")}
        for route in fields.get("routes", [])
    ]
    return fields
