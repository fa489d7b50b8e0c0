"""Derived liveness: online, connection_lost or never_seen, from the last heartbeat."""

from __future__ import annotations

from fleetlink.core.entities import Liveness

#: An agent that missed this many heartbeat intervals has lost its connection.
MISSED_INTERVALS_BEFORE_LOST = 3


def liveness(last_seen_at: int | None, now_ms: int, heartbeat_interval_s: int) -> Liveness:
    if last_seen_at is None:
        return Liveness.NEVER_SEEN
    if now_ms - last_seen_at <= MISSED_INTERVALS_BEFORE_LOST * heartbeat_interval_s * 1000:
        return Liveness.ONLINE
    return Liveness.CONNECTION_LOST
