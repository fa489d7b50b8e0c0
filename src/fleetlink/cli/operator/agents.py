"""``fleetlink agents``: list, inspect, revoke and tag agents."""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from fleetlink.cli.operator import OperatorTokenOption, UrlOption, operator_client
from fleetlink.cli.render import (
    LIVENESS_STYLE,
    STATE_STYLE,
    ago,
    duration,
    err,
    format_tags,
    now_ms,
    out,
    parse_tags,
    reporting_errors,
    styled,
    when,
)
from fleetlink.contract.agents import AgentSummary
from fleetlink.core.entities import AgentState, Liveness

agents_app = typer.Typer(help="Operator: list, inspect, revoke and tag agents.", no_args_is_help=True)

#: What ``agents ls --status`` filters on: an agent state or a liveness.
StatusFilter = StrEnum("StatusFilter", {m.name: m.value for m in (*AgentState, *Liveness)})  # type: ignore[misc]


def _tag_filter(value: str | None) -> str | None:
    if value is not None and (":" not in value or not value.partition(":")[0]):
        raise typer.BadParameter(f"{value!r} is not key:value", param_hint="--tag")
    return value


@agents_app.command("ls")
def list_agents(
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
    status: Annotated[StatusFilter | None, typer.Option("--status", help="Only agents in this state")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only agents with this tag, as key:value")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many agents")] = 50,
) -> None:
    """List agents with their state, liveness, last heartbeat and tags."""
    tag = _tag_filter(tag)
    with reporting_errors(), operator_client(url, operator_token) as client:
        agents = list(
            itertools.islice(client.iter_agents(status=status, tag=tag, page_size=min(limit, 100)), limit)
        )
    if not agents:
        err().print("no agents")
        return
    now = now_ms()
    table = Table()
    table.add_column("ID", no_wrap=True, min_width=max(len(a.agent_id) for a in agents))
    table.add_column("NAME", overflow="fold")
    table.add_column("STATE", no_wrap=True)
    table.add_column("LIVENESS", no_wrap=True)
    table.add_column("LAST SEEN", no_wrap=True)
    table.add_column("TAGS", overflow="fold")
    table.add_column("RELAY", no_wrap=True)
    for agent in agents:
        table.add_row(
            agent.agent_id,
            escape(agent.name),
            styled(agent.state.value, STATE_STYLE),
            styled(agent.liveness.value, LIVENESS_STYLE),
            ago(agent.last_seen_at, now),
            escape(format_tags(agent.tags)),
            relay_lag(agent.metrics),
        )
    out().print(table)


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
    return "[yellow]" + ", ".join(parts) + "[/yellow]" if parts else "[green]ok[/green]"


def _summary_rows(agent: AgentSummary) -> dict[str, str]:
    metrics = ", ".join(f"{name}={value:g}" for name, value in sorted(agent.metrics.items()))
    rows = {
        "id": agent.agent_id,
        "name": agent.name,
        "state": agent.state.value,
        "liveness": agent.liveness.value,
        "last seen": ago(agent.last_seen_at) if agent.last_seen_at else "never",
        "reported status": agent.reported_status or "-",
        "metrics": metrics or "-",
        "tags": format_tags(agent.tags) or "-",
        "capabilities": ", ".join(agent.capabilities) or "-",
        "agent version": agent.agent_version or "-",
        "key alg": agent.key_alg.value,
        "fingerprint": agent.fingerprint,
        "registered": when(agent.registered_at),
        "updated": when(agent.updated_at),
    }
    if agent.revoked_at is not None:
        rows["revoked"] = when(agent.revoked_at)
    hardware: dict[str, Any] = agent.hardware.model_dump()
    rows |= {f"hardware.{name}": str(value) for name, value in hardware.items() if str(value)}
    return rows


@agents_app.command("show")
def show_agent(
    agent_id: Annotated[str, typer.Argument(help="Agent id (agt_...)")],
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Show one agent and its registration history with similarity scores."""
    with reporting_errors(), operator_client(url, operator_token) as client:
        agent = client.get_agent(agent_id)
    details = Table(show_header=False, box=None)
    details.add_column(style="bold", no_wrap=True)
    details.add_column(overflow="fold")
    styles = {"state": STATE_STYLE, "liveness": LIVENESS_STYLE}
    for field, value in _summary_rows(agent).items():
        details.add_row(field, styled(value, styles[field]) if field in styles else escape(value))
    out().print(details)
    history = Table(title="Registration history (newest first)", title_justify="left")
    for column in ("WHEN", "EVENT", "OK", "SIMILARITY", "KEY CHANGED", "TOKEN", "REASON"):
        history.add_column(column, overflow="fold")
    for event in agent.registration_history:
        history.add_row(
            when(event.at),
            event.event.value,
            "[green]yes[/green]" if event.success else "[red]no[/red]",
            "-" if event.similarity_score is None else str(event.similarity_score),
            "yes" if event.key_changed else "no",
            event.token_id or "-",
            escape(event.reason or ""),
        )
    out().print(history)


@agents_app.command("revoke")
def revoke_agent(
    agent_id: Annotated[str, typer.Argument(help="Agent id (agt_...)")],
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Revoke an agent: its signed requests are refused from now on (idempotent)."""
    with reporting_errors(), operator_client(url, operator_token) as client:
        agent = client.revoke(agent_id)
    out().print(f"{agent.agent_id} {styled(agent.state.value, STATE_STYLE)} at {when(agent.revoked_at)}")


@agents_app.command("tags")
def replace_agent_tags(
    agent_id: Annotated[str, typer.Argument(help="Agent id (agt_...)")],
    url: UrlOption,
    pairs: Annotated[list[str] | None, typer.Argument(help="key=value pairs: the agent's new tags")] = None,
    operator_token: OperatorTokenOption = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove all tags (when no pairs are given)")] = False,
) -> None:
    """Replace an agent's tags with the given key=value pairs."""
    tags = parse_tags(pairs)
    if not tags and not clear:
        raise typer.BadParameter("give key=value pairs, or --clear to remove all tags", param_hint="pairs")
    with reporting_errors(), operator_client(url, operator_token) as client:
        agent = client.replace_tags(agent_id, tags)
    out().print(f"{agent.agent_id} tags: {escape(format_tags(agent.tags)) or '(none)'}")
