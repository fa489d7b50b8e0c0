"""Which of an agent's tags authorize (docs/security.md, "Tags that authorize").

An agent has two tag maps. ``tags`` are the ones that authorize: granted by the registration token
it registered with, or set by an operator (``PUT /v1/agents/{id}/tags``). ``requested_tags`` are the
ones the agent asked for itself and the token did not grant: labels operators see, which never meet
a read policy, a task's tag target, or (next) a console view or role. Every decision that rests on
tags reads :func:`authorizing_tags`; registration splits what it is given with
:func:`registration_tags`.
"""

from __future__ import annotations

from collections.abc import Mapping

from fleetlink.core.agents.model import Agent
from fleetlink.core.entities import MAX_TAGS
from fleetlink.core.errors import Unprocessable


def authorizing_tags(agent: Agent) -> Mapping[str, str]:
    """The tags an authorization decision may rest on: token-granted or operator-set, never requested."""
    return agent.tags


def registration_tags(
    granted: Mapping[str, str], requested: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(authorizing tags, labels) of a new agent: the token's tags, and the requested ones it did not
    grant. A requested tag the token sets to another value is refused (422), naming the tag."""
    conflicts = sorted(k for k, v in requested.items() if k in granted and granted[k] != v)
    if conflicts:
        named = ", ".join(f"{k}={granted[k]!r}" for k in conflicts)
        raise Unprocessable(
            f"the registration token sets tag {named}: the agent may not ask otherwise",
            code="token-tag-conflict",
            tags=conflicts,
        )
    labels = {k: v for k, v in requested.items() if k not in granted}
    if len(granted) + len(labels) > MAX_TAGS:
        raise Unprocessable(
            f"the token's and the agent's tags together are {len(granted) + len(labels)}; at most {MAX_TAGS}",
            code="too-many-tags",
        )
    return dict(granted), labels
