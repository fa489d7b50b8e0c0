"""Who may act on what: the checks every capability shares."""

from __future__ import annotations

from typing import Protocol

from fleetlink.core.errors import Forbidden


class Caller(Protocol):
    """An authenticated agent, as the checks see it."""

    @property
    def agent_id(self) -> str: ...


def require_own(caller: Caller, agent_id: str) -> None:
    """An agent may act only on its own resources."""
    if caller.agent_id != agent_id:
        raise Forbidden("an agent may act only on its own resources", code="not-your-resource")
