"""An agent reports the release it runs after a self-update or a rollback: its profile's version
changes and the agent's history records the event (who ran what, when, and why it went back)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from fleetlink.core.agents.model import Agent, RegistrationEvent, RegistrationEventKind
from fleetlink.core.agents.ports import RegistrationStore
from fleetlink.core.clock import Clock
from fleetlink.core.entities import Strict
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.release.manifest import VERSION_PATTERN

Version = Annotated[str, StringConstraints(pattern=VERSION_PATTERN, max_length=48)]


class ReportVersion(Strict):
    event: Literal["upgrade", "rollback"]
    version: Version = Field(description="The release the agent runs now")
    from_version: Version | None = Field(
        default=None, description="What it ran before (upgrade) or tried (rollback)"
    )
    detail: Annotated[str, StringConstraints(max_length=500)] | None = None


class VersionService:
    def __init__(self, registrations: RegistrationStore, clock: Clock) -> None:
        self._registrations = registrations
        self._clock = clock

    def report(self, agent: Agent, command: ReportVersion) -> Agent:
        now = self._clock.now_ms()
        updated = agent.model_copy(update={"agent_version": command.version, "updated_at": now})
        arrow = f"{command.from_version} -> {command.version}" if command.from_version else command.version
        event = RegistrationEvent(
            event_id=new_id(IdPrefix.AUDIT, now),
            agent_id=agent.agent_id,
            event=RegistrationEventKind(command.event),
            success=command.event == "upgrade",
            hardware=agent.hardware,
            reason=f"{arrow}" + (f": {command.detail}" if command.detail else ""),
            at=now,
        )
        self._registrations.save_identity(updated, event, None)
        return updated.model_copy(update={"version": (agent.version or 0) + 1})
