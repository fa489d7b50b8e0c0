"""Task targets on the command line: agent ids, names and tags (``-t``), and the warning about
targets that are offline."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field

import typer
from rich.markup import escape

from fleetlink.cli.render import (
    ago,
    duration,
    err,
)
from fleetlink.client.operator import OperatorClient
from fleetlink.contract.agents import AgentSummary
from fleetlink.core.entities import AgentState, Liveness

#: The server's default delivery timeout (seconds), named in the offline-target warning.
DEFAULT_DELIVERY_TIMEOUT_S = 86_400
#: Up to this many targets are looked up one by one for the offline warning; more: one listing.
_LOOKUP_ONE_BY_ONE = 20
#: The server takes at most this many agent ids in a task's targets.
MAX_TARGET_IDS = 1000


@dataclass
class Targets:
    """What --target named: agent ids, tags (all must match), and name globs / ``all`` to resolve."""

    agent_ids: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    everyone: bool = False


def parse_targets(targets: list[str] | None) -> Targets:
    """``AGENT_ID`` (agt_...), ``tag:KEY=VALUE``, ``all``, or an agent name (glob: ``web-*``)."""
    parsed = Targets()
    for target in targets or []:
        target = target.strip()
        kind, sep, rest = target.partition(":")
        if target == "all":
            parsed.everyone = True
        elif kind == "tag" and sep:
            key, eq, value = rest.partition("=")
            if not eq or not key.strip():
                old_key, _, old_value = rest.partition(":")
                hint = f"; write tag:{old_key}={old_value}" if old_key and old_value else ""
                raise typer.BadParameter(
                    f"{target!r}: a tag target is tag:KEY=VALUE{hint}", param_hint="--target"
                )
            parsed.tags[key.strip()] = value.strip()
        elif kind == "agent" and sep and rest.strip():
            parsed.agent_ids.append(rest.strip())
        elif target.startswith("agt_"):
            parsed.agent_ids.append(target)
        elif target:
            parsed.names.append(target)
    if not (parsed.agent_ids or parsed.tags or parsed.names or parsed.everyone):
        raise typer.BadParameter(
            "name at least one target: an agent id, tag:KEY=VALUE, an agent name or glob, or all",
            param_hint="--target",
        )
    return parsed


def resolve_names(targets: Targets, agents: Iterable[AgentSummary]) -> list[AgentSummary]:
    """The active agents ``all`` and the name globs pick; a glob that matches none is a usage error."""
    active = [agent for agent in agents if agent.state is AgentState.ACTIVE]
    if targets.everyone:
        return active
    picked: dict[str, AgentSummary] = {}
    for pattern in targets.names:
        matched = [agent for agent in active if fnmatch.fnmatchcase(agent.name, pattern)]
        if not matched:
            raise typer.BadParameter(f"no active agent is named {pattern!r}", param_hint="--target")
        picked |= {agent.agent_id: agent for agent in matched}
    return list(picked.values())


def _agents_named(client: OperatorClient, agent_ids: list[str]) -> list[AgentSummary]:
    """The targeted agents' summaries: looked up one by one when few, else from one listing."""
    if len(agent_ids) <= _LOOKUP_ONE_BY_ONE:
        return [client.get_agent(agent_id) for agent_id in agent_ids]
    wanted = set(agent_ids)
    return [agent for agent in client.iter_agents(page_size=100) if agent.agent_id in wanted]


def warn_offline(agents: list[AgentSummary], delivery_timeout_s: int) -> None:
    """One warning naming the targets that are not online, with when they were last seen."""
    away = [agent for agent in agents if agent.liveness is not Liveness.ONLINE]
    if not away:
        return
    named = "; ".join(
        f"{agent.agent_id} ({escape(agent.name)}) {agent.liveness.value}, last seen {ago(agent.last_seen_at)}"
        for agent in away[:10]
    )
    more = f" and {len(away) - 10} more" if len(away) > 10 else ""
    err().print(
        f"[yellow]warning: {len(away)} of {len(agents)} targets not online: {named}{more}. "
        f"Their executions wait up to {duration(delivery_timeout_s * 1000)} (--delivery-timeout) "
        "for them to return.[/yellow]"
    )
