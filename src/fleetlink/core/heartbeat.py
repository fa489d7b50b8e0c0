"""The heartbeat, composed: each capability contributes its part of the answer.

Presence (agents) is recorded first, in the heartbeat's one conditional write: it also refuses a
replayed or reordered heartbeat sequence, and then nothing else runs. Lease renewals, the pending
count and the executions to stop come from tasks; the tunnels version from tunnels. A capability
adds its part by implementing ``HeartbeatContributor`` and being listed where the heartbeat is
wired (``fleetlink.api.deps``); no other capability changes. A field nobody contributes keeps its
default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Protocol, TypedDict

from pydantic import Field, StringConstraints

from fleetlink.core.access import Caller, require_own
from fleetlink.core.clock import Clock
from fleetlink.core.entities import Strict
from fleetlink.core.numbers import Metric

MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.]{1,24}$")]
MAX_HEARTBEAT_METRICS = 16


class Heartbeat(Strict):
    status: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,31}$")] | None = Field(
        default=None, description="What the agent says of itself, e.g. ok, busy, draining"
    )
    metrics: dict[MetricName, Metric] = Field(default_factory=dict, max_length=MAX_HEARTBEAT_METRICS)
    running_executions: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=100, description="Execution ids whose leases to renew"
    )


class HeartbeatParts(TypedDict, total=False):
    """What contributors may set in the answer (each sets its own keys)."""

    pending_executions: int
    renewed: list[str]
    cancel: list[str]
    tunnels_version: int


@dataclass(frozen=True)
class HeartbeatResult:
    server_time: int
    heartbeat_interval_s: int
    pending_executions: int = 0
    tunnels_version: int = 0
    renewed: list[str] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)


class HeartbeatCaller(Caller, Protocol):
    """The agent sending the heartbeat, as read when its signature was checked."""

    @property
    def tunnels_version(self) -> int:
        """Moves on whenever the agent's desired tunnel state changes (kept where the caller is read)."""
        ...


class HeartbeatContributor(Protocol):
    def on_heartbeat(self, caller: HeartbeatCaller, command: Heartbeat, now_ms: int) -> HeartbeatParts:
        """Act on an accepted heartbeat of ``caller``; return this capability's part of the answer."""
        ...


class PresenceRecorder(Protocol):
    def record_presence(self, caller: Caller, command: Heartbeat, now_ms: int, sequence: int | None) -> None:
        """Record that ``caller`` is alive. With a ``sequence`` (the signature's ``seq:<n>``), refuse it
        unless greater than the last one recorded: raise ``Unauthenticated`` and write nothing."""
        ...


class HeartbeatService:
    def __init__(
        self,
        clock: Clock,
        heartbeat_interval_s: int,
        presence: PresenceRecorder,
        contributors: Sequence[HeartbeatContributor],
    ) -> None:
        self._clock = clock
        self._presence = presence
        self._contributors = tuple(contributors)
        self.heartbeat_interval_s = heartbeat_interval_s

    def heartbeat(
        self, caller: HeartbeatCaller, agent_id: str, command: Heartbeat, *, sequence: int | None = None
    ) -> HeartbeatResult:
        """Presence first (a stale ``sequence`` stops here), then every contributor in order, their parts
        merged into one answer."""
        require_own(caller, agent_id)
        now = self._clock.now_ms()
        self._presence.record_presence(caller, command, now, sequence)
        parts: HeartbeatParts = {}
        for contributor in self._contributors:
            parts.update(contributor.on_heartbeat(caller, command, now))
        return HeartbeatResult(server_time=now, heartbeat_interval_s=self.heartbeat_interval_s, **parts)
