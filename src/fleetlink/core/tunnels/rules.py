"""Pure rules of tunnels: which route serves a path, route validation and identity across edits,
what an operator's change is (its events), and the health an operator sees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fleetlink.core.entities import Liveness
from fleetlink.core.errors import Unprocessable
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.tunnels.model import (
    EventLevel,
    EventType,
    Health,
    Route,
    RouteSpec,
    TunnelPatch,
    TunnelRecord,
)


def prefix_matches(prefix: str, path: str) -> bool:
    """A prefix matches whole path segments: ``/api`` matches ``/api`` and ``/api/x``, not ``/apix``."""
    if prefix == "/" or path == prefix:
        return True
    stem = prefix if prefix.endswith("/") else prefix + "/"
    return path.startswith(stem)


def route_for(routes: Sequence[RouteSpec], path: str) -> RouteSpec | None:
    """The enabled route serving ``path``: the longest matching prefix, then the higher priority
    (None: the tunnel's own ``local_target`` serves it). The agent's proxy picks the same way."""
    matching = [r for r in routes if r.enabled and prefix_matches(r.path_prefix, path)]
    return max(matching, key=lambda r: (len(r.path_prefix), r.priority), default=None)


def check_routes(routes: Sequence[RouteSpec]) -> None:
    """Refuse routes that would be ambiguous: two prefixes equal but for a trailing ``/`` serve the
    same paths, so the winner could not be told by length (422)."""
    seen: dict[str, str] = {}
    for route in routes:
        key = route.path_prefix.rstrip("/") or "/"
        if key in seen:
            raise Unprocessable(
                f"path_prefix {route.path_prefix!r} and {seen[key]!r} serve the same paths",
                code="ambiguous-routes",
            )
        seen[key] = route.path_prefix


def with_ids(specs: Sequence[RouteSpec], before: Sequence[Route], at_ms: int) -> list[Route]:
    """Routes with ids: a path prefix that was there keeps its route id, a new one gets a fresh id."""
    check_routes(specs)
    known = {route.path_prefix: route.route_id for route in before}
    return [
        Route(route_id=known.get(spec.path_prefix) or new_id(IdPrefix.ROUTE, at_ms), **spec.model_dump())
        for spec in specs
    ]


@dataclass(frozen=True)
class Change:
    """One event an operator's change emits: (level, type, message, data)."""

    level: EventLevel
    event_type: EventType
    message: str
    data: dict[str, object]


def changes(before: TunnelRecord, after: TunnelRecord, patch: TunnelPatch) -> list[Change]:
    """What a patch changed, as events: routes added and removed, the secret rotated, the rest."""
    found: list[Change] = []
    old = {r.path_prefix: r for r in before.routes}
    new = {r.path_prefix: r for r in after.routes}
    for prefix in new.keys() - old.keys():
        found.append(
            Change(EventLevel.INFO, EventType.ROUTE_ADDED, f"route {prefix} added", {"path_prefix": prefix})
        )
    for prefix in old.keys() - new.keys():
        found.append(
            Change(
                EventLevel.INFO, EventType.ROUTE_REMOVED, f"route {prefix} removed", {"path_prefix": prefix}
            )
        )
    if patch.secret is not None:
        found.append(Change(EventLevel.INFO, EventType.SECRET_ROTATED, "secret replaced", {}))
    fields = [
        name
        for name in ("enabled", "local_target", "public_hostname")
        if getattr(before, name) != getattr(after, name)
    ]
    changed_routes = [p for p in new.keys() & old.keys() if new[p].model_dump() != old[p].model_dump()]
    if changed_routes:
        fields.append("routes")
    if fields:
        found.append(
            Change(
                EventLevel.INFO,
                EventType.CONFIG_CHANGED,
                f"{', '.join(fields)} changed",
                {"fields": fields, **({"enabled": after.enabled} if "enabled" in fields else {})},
            )
        )
    return found


def seen_health(record: TunnelRecord, liveness: Liveness) -> Health:
    """What an operator sees: the agent's last report while it heartbeats, ``unknown`` once it has
    gone silent (or has never been seen): nobody knows what its tunnels do."""
    return record.health if liveness is Liveness.ONLINE else Health.UNKNOWN
