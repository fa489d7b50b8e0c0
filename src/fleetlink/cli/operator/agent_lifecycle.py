"""``fleetlink agents rm|restore|purge`` (decommissioning) and what ``agents ls --deleted`` lists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import typer
from rich.markup import escape

from fleetlink.agent.client import OperatorClient, _follow, _query, _segment
from fleetlink.cli.operator import OperatorTokenOption, UrlOption, operator_client
from fleetlink.cli.operator.agents import agents_app
from fleetlink.cli.render import CallContext, err, fail, out, reporting_errors, when
from fleetlink.contract.agents import AgentList, AgentSummary
from fleetlink.core.deferred_model import DeferredModel

AgentArgument = Annotated[str, typer.Argument(help="Agent id (agt_...) or name")]


class PurgeResult(DeferredModel):
    agent_id: str
    purged_items: int


def iter_deleted(client: OperatorClient, page_size: int | None = None) -> Iterator[AgentSummary]:
    """Every deleted (not yet purged) agent."""
    return _follow(
        lambda cursor: client._call(
            AgentList, "GET", "/deleted-agents", params=_query(limit=page_size, cursor=cursor)
        )
    )


def resolve_agent(client: OperatorClient, name_or_id: str, *, deleted: bool = False) -> str:
    """The agent id of an id or a unique name (names are looked up in the list)."""
    if name_or_id.startswith("agt_"):
        return name_or_id
    agents = iter_deleted(client, 100) if deleted else client.iter_agents(page_size=100)
    matches = [agent.agent_id for agent in agents if agent.name == name_or_id]
    if not matches:
        raise fail(f"no {'deleted ' if deleted else ''}agent named {name_or_id!r}", fix="fleetlink agents ls")
    if len(matches) > 1:
        raise fail(f"{len(matches)} agents are named {name_or_id!r}: {', '.join(matches)}", fix="pass the id")
    return matches[0]


@agents_app.command("rm")
def remove_agent(
    agent: AgentArgument,
    url: UrlOption = None,
    operator_token: OperatorTokenOption = None,
    purge: Annotated[
        bool,
        typer.Option("--purge", help="Purge its items now instead of after the retention (irreversible)"),
    ] = False,
) -> None:
    """Delete an agent: revoked and hidden from lists at once; restorable (agents restore) until the
    retention ends (7 days by default), then a cleanup duty purges everything it left."""
    with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
        agent_id = resolve_agent(client, agent)
        summary = client._call(AgentSummary, "DELETE", f"/agents/{_segment(agent_id)}")
        if purge:
            result = client._call(PurgeResult, "POST", f"/agents/{_segment(agent_id)}/purge")
    if purge:
        out().print(f"{agent_id} deleted and purged ({result.purged_items} items)", markup=False)
        return
    out().print(f"{agent_id} deleted at {when(summary.deleted_at)}", markup=False)
    err().print(f"restore it with: fleetlink agents restore {escape(agent_id)} (until it is purged)")


@agents_app.command("restore")
def restore_agent(
    agent: AgentArgument,
    url: UrlOption = None,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Restore a deleted agent (active again, its tags back) before it is purged."""
    with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
        agent_id = resolve_agent(client, agent, deleted=True)
        summary = client._call(AgentSummary, "POST", f"/agents/{_segment(agent_id)}/restore")
    out().print(f"{summary.agent_id} restored ({summary.state.value})", markup=False)


@agents_app.command("purge")
def purge_agent(
    agent: AgentArgument,
    url: UrlOption = None,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Purge a deleted agent now (irreversible): every item it left is removed."""
    with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
        agent_id = resolve_agent(client, agent, deleted=True)
        result = client._call(PurgeResult, "POST", f"/agents/{_segment(agent_id)}/purge")
    out().print(f"{agent_id} purged ({result.purged_items} items)", markup=False)
