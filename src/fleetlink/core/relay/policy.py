"""Who may read a collection through the relay: the whole fleet, or agents carrying given tags."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

#: ``"fleet"`` (every active agent) or tags an agent must all carry.
Readers = Literal["fleet"] | Mapping[str, str]

DEFAULT_READERS: Readers = "fleet"


def may_read(readers: Readers, agent_tags: Mapping[str, str]) -> bool:
    """Whether an agent with ``agent_tags`` may query a collection open to ``readers``."""
    if readers == "fleet":
        return True
    assert not isinstance(readers, str)
    return all(agent_tags.get(name) == value for name, value in readers.items())
