"""``fleetlink agents``: list, inspect, revoke and tag agents."""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape

from fleetlink.cli.operator import OperatorTokenOption, UrlOption, operator_client
from fleetlink.cli.render import (
    LIVENESS_STYLE,
    STATE_STYLE,
    CallContext,
    Column,
    JsonOption,
    OutputFormat,
    OutputOption,
    ago,
    duration,
    err,
    format_tags,
    now_ms,
    out,
    parse_tag,
    parse_tags,
    print_details,
    print_json,
    print_table,
    reporting_errors,
    styled,
    wants_json,
    when,
)
from fleetlink.contract.agents import AgentSummary
from fleetlink.core.entities import AgentState, Liveness

agents_app = typer.Typer(help="Operator: list, inspect, revoke and tag agents.", no_args_is_help=True)

#: What ``agents ls --status`` filters on: an agent state or a liveness.
StatusFilter = StrEnum("StatusFilter", {m.name: m.value for m in (*AgentState, *Liveness)})  # type: ignore[misc]


@agents_app.command("ls")
def list_agents(
    url: UrlOption = None,
    operator_token: OperatorTokenOption = None,
    status: Annotated[StatusFilter | None, typer.Option("--status", help="Only agents in this state")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only agents with this tag, as key=value")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many agents")] = 50,
    deleted: Annotated[bool, typer.Option("--deleted", help="Deleted agents not purged yet, only")] = False,
    output: OutputOption = OutputFormat.TABLE,
    as_json: JsonOption = False,
) -> None:
    """List agents with their state, liveness, version, last heartbeat and tags (-o json: a JSON array)."""
    from fleetlink.cli.operator.agent_lifecycle import iter_deleted

    tag_filter = ":".join(parse_tag(tag)) if tag is not None else None  # the API's query form
    with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
        found = (
            iter_deleted(client, min(limit, 100))
            if deleted
            else client.iter_agents(status=status, tag=tag_filter, page_size=min(limit, 100))
        )
        agents = list(itertools.islice(found, limit))
    if wants_json(output, as_json):
        print_json(agents)
        return
    if not agents:
        err().print("no agents")
        return
    now = now_ms()
    columns = [
        Column("ID"),
        Column("NAME", max_width=40),
        Column("STATE"),
        Column("LIVENESS"),
        Column("VERSION"),
        Column("LAST SEEN"),
        Column("TAGS", fold=True),
        Column("RELAY"),
    ]
    rows = [
        [
            agent.agent_id,
            escape(agent.name),
            styled(agent.state.value, STATE_STYLE),
            styled(agent.liveness.value, LIVENESS_STYLE),
            escape(agent.agent_version or "-"),
            ago(agent.last_seen_at, now),
            escape(format_tags(agent.tags)),
            relay_lag(agent.metrics),
        ]
        for agent in agents
    ]
    print_table(columns, rows)


def relay_lag(metrics: dict[str, float]) -> str:
    """An agent's record sync from its last heartbeat: ``ok``, or what waits, for how long, and why."""
    if "relay_queue_size" not in metrics:
        return "-"
    parts = []
    if metrics["relay_queue_size"]:
        oldest = duration(int(metrics.get("relay_oldest_age_s", 0) * 1000))
        parts.append(f"{metrics['relay_queue_size']:g} queued, oldest {oldest}")
    if metrics.get("relay_failures"):
        parts.append(f"{metrics['relay_failures']:g} failures")
    if metrics.get("relay_dead_letters"):
        parts.append(f"{metrics['relay_dead_letters']:g} rejected")
    return ", ".join(parts) if parts else "ok"


def _summary_rows(agent: AgentSummary) -> dict[str, str]:
    metrics = ", ".join(f"{name}={value:g}" for name, value in sorted(agent.metrics.items()))
    rows = {
        "id": agent.agent_id,
        "name": escape(agent.name),
        "state": styled(agent.state.value, STATE_STYLE),
        "liveness": styled(agent.liveness.value, LIVENESS_STYLE),
        "last seen": ago(agent.last_seen_at) if agent.last_seen_at else "never",
        "reported status": escape(agent.reported_status or "-"),
        "metrics": metrics or "-",
        "tags": escape(format_tags(agent.tags)) or "-",
        "capabilities": escape(", ".join(agent.capabilities)) or "-",
        "agent version": escape(agent.agent_version or "-"),
        "key alg": agent.key_alg.value,
        "fingerprint": agent.fingerprint,
        "registered": when(agent.registered_at),
        "updated": when(agent.updated_at),
    }
    if agent.revoked_at is not None:
        rows["revoked"] = when(agent.revoked_at)
    hardware: dict[str, Any] = agent.hardware.model_dump()
    rows |= {f"hardware.{name}": escape(str(value)) for name, value in hardware.items() if str(value)}
    return rows


@agents_app.command("show")
def show_agent(
    agent_id: Annotated[str, typer.Argument(help="Agent id (agt_...)")],
    url: UrlOption = None,
    operator_token: OperatorTokenOption = None,
    output: OutputOption = OutputFormat.TABLE,
    as_json: JsonOption = False,
) -> None:
    """Show one agent and its registration history with similarity scores (-o json: the API's object)."""
    with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
        agent = client.get_agent(agent_id)
    if wants_json(output, as_json):
        print_json(agent)
        return
    print_details(_summary_rows(agent))
    columns = [Column(name, fold=True) for name in ("WHEN", "EVENT", "OK", "SIMILARITY", "KEY CHANGED")]
    columns += [Column("TOKEN"), Column("REASON", fold=True)]
    rows = [
        [
            when(event.at),
            event.event.value,
            "[green]yes[/green]" if event.success else "[red]no[/red]",
            "-" if event.similarity_score is None else str(event.similarity_score),
            "[yellow]yes[/yellow]" if event.key_changed else "no",
            event.token_id or "-",
            escape(event.reason or ""),
        ]
        for event in agent.registration_history
    ]
    print_table(columns, rows, title="Registration history (newest first)")


@agents_app.command("revoke")
def revoke_agent(
    agent_id: Annotated[str, typer.Argument(help="Agent id (agt_...)")],
    url: UrlOption = None,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Revoke an agent: its signed requests are refused from now on (idempotent)."""
    with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
        agent = client.revoke(agent_id)
    out().print(f"{agent.agent_id} {styled(agent.state.value, STATE_STYLE)} at {when(agent.revoked_at)}")


@agents_app.command("tags")
def replace_agent_tags(
    agent_id: Annotated[str, typer.Argument(help="Agent id (agt_...)")],
    url: UrlOption = None,
    pairs: Annotated[list[str] | None, typer.Argument(help="key=value pairs: the agent's new tags")] = None,
    operator_token: OperatorTokenOption = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove all tags (when no pairs are given)")] = False,
) -> None:
    """Replace an agent's tags with the given key=value pairs."""
    tags = parse_tags(pairs)
    if not tags and not clear:
        raise typer.BadParameter("give key=value pairs, or --clear to remove all tags", param_hint="pairs")
    with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
        agent = client.replace_tags(agent_id, tags)
    out().print(f"{agent.agent_id} tags: {escape(format_tags(agent.tags)) or '(none)'}")


# deleting, restoring and upgrading agents (fleetlink.cli.operator.agent_lifecycle) add their commands here
from fleetlink.cli.operator import agent_lifecycle as _lifecycle  # noqa: E402, F401
