"""``fleetlink agents rm|restore|purge`` (decommissioning) and what ``agents ls --deleted`` lists."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, TypeVar

import typer

from fleetlink.cli.names import AgentArgument
from fleetlink.cli.operator.agents import agents_app
from fleetlink.cli.operator.command import OperatorCall, operator_command
from fleetlink.cli.render import err, escape, fail, out, when
from fleetlink.client.http import follow_pages, query_params, segment
from fleetlink.client.operator import OperatorClient
from fleetlink.contract.agents import AgentList, AgentSummary
from fleetlink.contract.rollout import PurgeResult
from fleetlink.core.entities import AgentState
from fleetlink.core.releases.model import ReleaseList

Answer = TypeVar("Answer", AgentSummary, PurgeResult)


def deleted_page(client: OperatorClient, limit: int | None, cursor: str | None) -> AgentList:
    """One page of deleted (not yet purged) agents."""
    params = query_params(limit=limit, cursor=cursor)
    return client._call(AgentList, "GET", "/deleted-agents", params=params)


def iter_deleted(client: OperatorClient, page_size: int | None = None) -> Iterator[AgentSummary]:
    """Every deleted (not yet purged) agent."""
    return follow_pages(
        lambda cursor: client._call(
            AgentList, "GET", "/deleted-agents", params=query_params(limit=page_size, cursor=cursor)
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


@operator_command(agents_app, "rm", json_output=False)
def remove_agent(
    call: OperatorCall,
    agent: AgentArgument,
    purge: Annotated[
        bool,
        typer.Option("--purge", help="Purge its items now instead of after the retention (irreversible)"),
    ] = False,
) -> None:
    """Delete an agent: revoked and hidden from lists at once; restorable (agents restore) until the
    retention ends (7 days by default), then a cleanup duty purges everything it left."""
    with call.session() as client:
        agent_id = resolve_agent(client, agent)
        summary = client._call(AgentSummary, "DELETE", f"/agents/{segment(agent_id)}")
        if purge:
            result = client._call(PurgeResult, "POST", f"/agents/{segment(agent_id)}/purge")
    if purge:
        out().print(f"{agent_id} deleted and purged ({result.purged_items} items)", markup=False)
        return
    out().print(f"{agent_id} deleted at {when(summary.deleted_at)}", markup=False)
    err().print(f"restore it with: fleetlink agents restore {escape(agent_id)} (until it is purged)")


def _on_deleted(call: OperatorCall, agent: str, action: str, answer: type[Answer]) -> tuple[str, Answer]:
    """POST ``action`` on a deleted agent (named as the user named it): its id and the answer."""
    with call.session() as client:
        agent_id = resolve_agent(client, agent, deleted=True)
        return agent_id, client._call(answer, "POST", f"/agents/{segment(agent_id)}/{action}")


@operator_command(agents_app, "restore", json_output=False)
def restore_agent(call: OperatorCall, agent: AgentArgument) -> None:
    """Restore a deleted agent (active again, its tags back) before it is purged."""
    _, summary = _on_deleted(call, agent, "restore", AgentSummary)
    out().print(f"{summary.agent_id} restored ({summary.state.value})", markup=False)


@operator_command(agents_app, "purge", json_output=False)
def purge_agent(call: OperatorCall, agent: AgentArgument) -> None:
    """Purge a deleted agent now (irreversible): every item it left is removed."""
    agent_id, result = _on_deleted(call, agent, "purge", PurgeResult)
    out().print(f"{agent_id} purged ({result.purged_items} items)", markup=False)


def _concurrency(value: str | None, targeted: int) -> int | None:
    """``--max-concurrency``: a number, or a share of the targeted agents (``10%``, at least 1)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:
                raise ValueError
            return max(1, math.ceil(targeted * share / 100))
        count = int(text)
        if count < 1:
            raise ValueError
        return count
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: a number of agents or a share like 10%", param_hint="--max-concurrency"
        ) from None


@operator_command(agents_app, "upgrade", json_output=False)
def upgrade_agents(
    call: OperatorCall,
    to: Annotated[str, typer.Option("--to", help="The release to run (fleetlink release ls)")],
    target: Annotated[
        list[str],
        typer.Option(
            "--target", "-t", help="agt_ id, tag:KEY=VALUE (a ring: tag:ring=canary), a name or glob, or all"
        ),
    ],
    max_concurrency: Annotated[
        str | None,
        typer.Option("--max-concurrency", help="At most this many at once: a number or a share (10%)"),
    ] = None,
    max_errors: Annotated[
        int | None,
        typer.Option(
            "--max-errors", min=1, help="Stop the rollout (queued upgrades cancelled) after this many fail"
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the rollout until it ends")] = True,
    poll: Annotated[float, typer.Option("--poll", min=0.1, help="Seconds between progress checks")] = 1.0,
) -> None:
    """Upgrade agents to a release, a ring at a time: a built-in `upgrade` task with the tasks'
    targeting, rate control (--max-concurrency) and error budget (--max-errors). Each agent installs
    the release side by side, restarts into it and rolls back by itself if it does not heartbeat.

    Example: fleetlink agents upgrade --to 0.2.0 --target tag:ring=canary --max-concurrency 10% --max-errors 1
    """
    from fleetlink.cli.operator.targets import parse_targets, resolve_names
    from fleetlink.cli.waiting import follow

    targets = parse_targets(target)
    with call.session() as client:
        published = {
            r.platform
            for r in client._call(ReleaseList, "GET", "/releases").items
            if r.version == to and r.status.value == "published"
        }
        if not published:
            raise fail(
                f"no published release {to}", fix="fleetlink release ls; fleetlink release publish ..."
            )
        known: list[AgentSummary] = []
        if targets.names or targets.everyone:
            known = resolve_names(targets, client.iter_agents(status=AgentState.ACTIVE, page_size=100))
        agent_ids = list(dict.fromkeys([*targets.agent_ids, *(agent.agent_id for agent in known)]))
        tagged = 0
        if targets.tags:
            tag = ",".join(f"{k}:{v}" for k, v in targets.tags.items())
            tagged = sum(1 for _ in client.iter_agents(status=AgentState.ACTIVE, tag=tag, page_size=100))
        created = client.create_task(
            type="upgrade",
            input={"version": to},
            agent_ids=agent_ids,
            tags=targets.tags,
            timeout_seconds=900,
            max_concurrency=_concurrency(max_concurrency, len(agent_ids) + tagged),
            max_errors=max_errors,
        )
        err().print(f"upgrade to {escape(to)}: task {created.task_id}, {created.executions} agent(s)")
        if not wait:
            typer.echo(created.task_id)
            return
        task_id = created.task_id
        task = follow(
            lambda: client.get_task(task_id),
            names={},
            offline=set(),
            poll_s=poll,
            wait_s=0,
            show_results=False,
        ).task
    failed = [e for e in task.executions if e.status != "succeeded"]
    for execution in failed:
        err().print(f"[red]{execution.agent_id} {execution.status}[/red] {escape(execution.error or '')}")
    out().print(
        f"{len(task.executions) - len(failed)} of {len(task.executions)} upgraded to {to}", markup=False
    )
    if failed:
        raise typer.Exit(1)
