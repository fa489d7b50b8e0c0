"""Agents named the way operators name them: every command that takes an agent id takes its name too.

A name is looked up among the fleet's agents (one listing, page by page). A name two agents share
is refused with both ids, unless the command was told ``--all-matching``; an agent id
(``agt_…``) is taken as is.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Annotated

import typer

from fleetlink.cli.render import escape, fail
from fleetlink.client.operator import OperatorClient
from fleetlink.contract.agents import AgentSummary
from fleetlink.core.entities import AgentState
from fleetlink.core.ids import IdPrefix, is_id

AgentArgument = Annotated[str, typer.Argument(metavar="AGENT", help="Agent id (agt_...) or name")]
AllMatchingOption = Annotated[
    bool,
    typer.Option("--all-matching", help="A name several agents share targets all of them (else refused)"),
]


def is_agent_id(reference: str) -> bool:
    return is_id(reference, IdPrefix.AGENT)


def ambiguous(name: str, agents: Iterable[AgentSummary], *, hint: str = "") -> typer.Exit:
    """The error for a name several agents share: their ids, and how to pick."""
    listed = ", ".join(agent.agent_id for agent in agents)
    return fail(
        f"{name!r} names several agents: {listed}",
        fix=hint
        or "name one by its id (fleetlink agents ls shows them), or rename one "
        "(fleetlink agent register --name NEW on that machine)",
    )


def agents_named(client: OperatorClient, name: str, *, active_only: bool = False) -> list[AgentSummary]:
    """The agents called ``name`` (a glob such as ``web-*`` matches several), in the API's order."""
    status = AgentState.ACTIVE if active_only else None
    return [
        agent
        for agent in client.iter_agents(status=status, page_size=100)
        if fnmatch.fnmatchcase(agent.name, name)
    ]


def resolve_agent(client: OperatorClient, reference: str) -> str:
    """The id of the one agent ``reference`` (an id or a name) names; a usage error otherwise."""
    if is_agent_id(reference):
        return reference
    matched = [agent for agent in client.iter_agents(page_size=100) if agent.name == reference]
    if not matched:
        raise fail(
            f"no agent is named {reference!r}",
            fix="fleetlink agents ls lists the agents' names and ids",
        )
    if len(matched) > 1:
        raise ambiguous(reference, matched)
    return matched[0].agent_id


def duplicate_names(agents: Iterable[AgentSummary]) -> dict[str, list[str]]:
    """Names more than one of ``agents`` carry, with their ids."""
    by_name: dict[str, list[str]] = {}
    for agent in agents:
        by_name.setdefault(agent.name, []).append(agent.agent_id)
    return {name: ids for name, ids in by_name.items() if len(ids) > 1}


def warn_duplicates(agents: Iterable[AgentSummary]) -> None:
    """A one-line warning per name that several of the listed agents share."""
    from fleetlink.cli.render import err

    for name, ids in sorted(duplicate_names(agents).items()):
        err().print(
            f"[yellow]warning: {len(ids)} agents are named {escape(name)!s} ({', '.join(ids)}): "
            "target them by id, or with --all-matching[/yellow]"
        )
