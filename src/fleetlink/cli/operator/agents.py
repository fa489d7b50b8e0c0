"""``fleetlink agents``: list, inspect, revoke and tag agents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from enum import StrEnum
from typing import Annotated, Any

import typer

from fleetlink.cli.names import AgentArgument, resolve_agent, warn_duplicates
from fleetlink.cli.operator.command import ListCall, OperatorCall, list_command, operator_command
from fleetlink.cli.params import duration_option
from fleetlink.cli.render import (
    LIVENESS_STYLE,
    STATE_STYLE,
    Column,
    ago,
    duration,
    err,
    escape,
    fail,
    format_tags,
    now_ms,
    out,
    parse_tag,
    parse_tags,
    print_details,
    print_table,
    styled,
    when,
)
from fleetlink.client.operator import OperatorClient
from fleetlink.contract.agents import AgentDetail, AgentSummary, RecoveryTokenCreated
from fleetlink.core.entities import AgentState, Liveness

agents_app = typer.Typer(help="Operator: list, inspect, revoke and tag agents.", no_args_is_help=True)

#: What ``agents ls --status`` filters on: an agent state or a liveness.
StatusFilter = StrEnum("StatusFilter", {m.name: m.value for m in (*AgentState, *Liveness)})  # type: ignore[misc]


@list_command(agents_app, "ls")
def list_agents(
    call: ListCall,
    status: Annotated[StatusFilter | None, typer.Option("--status", help="Only agents in this state")] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", metavar="KEY=VALUE", help="Only agents with this tag")
    ] = None,
    deleted: Annotated[bool, typer.Option("--deleted", help="Deleted agents not purged yet, only")] = False,
) -> None:
    """List agents with their state, liveness, version, last heartbeat and tags (-o json: a JSON array).

    Order: the API's (stable: by shard, then registration time); the rows printed are sorted by name,
    then id. Cut at --limit with a hint naming the command that continues; --all reads every page."""
    from fleetlink.cli.operator.agent_lifecycle import deleted_page

    tag_filter = ":".join(parse_tag(tag)) if tag is not None else None  # the API's query form
    with call.session() as client:
        taken = call.take(
            lambda size, at: (
                deleted_page(client, size, at)
                if deleted
                else client.list_agents(status=status, tag=tag_filter, limit=size, cursor=at)
            )
        )
    by_name = replace(taken, items=sorted(taken.items, key=lambda agent: (agent.name, agent.agent_id)))
    options = [*(["--status", str(status)] if status else []), *(["--tag", tag] if tag else [])]
    options += ["--deleted"] if deleted else []
    call.show("agents ls", by_name, _print_agents, options=options, empty="no agents")


def _print_agents(agents: list[AgentSummary]) -> None:
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
            escape(format_tags(agent.tags, agent.requested_tags)),
            relay_lag(agent.metrics),
        ]
        for agent in agents
    ]
    print_table(columns, rows)
    warn_duplicates(agents)


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
        "tags": escape(format_tags(agent.tags, agent.requested_tags)) or "-",
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


@operator_command(agents_app, "show")
def show_agent(call: OperatorCall, agent_ref: AgentArgument) -> None:
    """Show one agent and its registration history with similarity scores (-o json: the API's object)."""
    call.answer(lambda client: client.get_agent(resolve_agent(client, agent_ref)), _print_agent)


def _print_agent(agent: AgentDetail) -> None:
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


@operator_command(agents_app, "revoke")
def revoke_agent(call: OperatorCall, agent_ref: AgentArgument) -> None:
    """Revoke an agent: its signed requests are refused from now on (idempotent)."""
    call.answer(lambda client: client.revoke(resolve_agent(client, agent_ref)), _print_revoked)


def _print_revoked(agent: AgentSummary) -> None:
    out().print(
        f"{agent.agent_id} ({escape(agent.name)}) {styled(agent.state.value, STATE_STYLE)} "
        f"at {when(agent.revoked_at)}"
    )


TagPairs = Annotated[list[str] | None, typer.Argument(metavar="KEY=VALUE", help="Tags, as key=value")]


def _print_tags(agent: AgentSummary) -> None:
    out().print(
        f"{agent.agent_id} ({escape(agent.name)}) tags: {escape(format_tags(agent.tags)) or '(none)'}"
    )


def _edit_tags(call: OperatorCall, agent_ref: str, edit: Callable[[dict[str, str]], dict[str, str]]) -> None:
    """Replace an agent's tags with ``edit(its current tags)``, and print them."""

    def ask(client: OperatorClient) -> AgentSummary:
        agent_id = resolve_agent(client, agent_ref)
        return client.replace_tags(agent_id, edit(dict(client.get_agent(agent_id).tags)))

    call.answer(ask, _print_tags)


@operator_command(agents_app, "tags", no_args_is_help=True)
def replace_agent_tags(
    call: OperatorCall,
    agent_ref: AgentArgument,
    pairs: TagPairs = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every tag (give no pairs)")] = False,
) -> None:
    """Replace all of an agent's tags with KEY=VALUE pairs (--clear: none). One tag: agents tag / untag."""
    tags = parse_tags(pairs)
    if not tags and not clear:
        raise typer.BadParameter(
            "give key=value pairs, or --clear to remove all tags", param_hint="KEY=VALUE"
        )
    call.answer(lambda client: client.replace_tags(resolve_agent(client, agent_ref), tags), _print_tags)


@operator_command(agents_app, "tag", no_args_is_help=True)
def add_agent_tags(
    call: OperatorCall,
    agent_ref: AgentArgument,
    pairs: Annotated[list[str], typer.Argument(metavar="KEY=VALUE", help="Tags to add or change")],
) -> None:
    """Add (or change) tags on an agent, keeping its others."""
    added = parse_tags(pairs)
    _edit_tags(call, agent_ref, lambda current: {**current, **added})


@operator_command(agents_app, "untag", no_args_is_help=True)
def remove_agent_tags(
    call: OperatorCall,
    agent_ref: AgentArgument,
    tag_keys: Annotated[list[str], typer.Argument(metavar="KEY", help="Keys of the tags to remove")],
) -> None:
    """Remove tags from an agent by key, keeping its others (a key it lacks is an error)."""

    def without(current: dict[str, str]) -> dict[str, str]:
        missing = sorted(set(tag_keys) - set(current))
        if missing:
            raise fail(
                f"the agent has no tag {', '.join(missing)}",
                fix=f"fleetlink agents show {agent_ref} lists its tags",
            )
        return {key: value for key, value in current.items() if key not in tag_keys}

    _edit_tags(call, agent_ref, without)


@operator_command(agents_app, "recovery-token", no_args_is_help=True)
def mint_recovery_token(
    call: OperatorCall,
    agent_ref: AgentArgument,
    ttl: Annotated[
        int, duration_option("--ttl", help="How long the token may be used", low=60, high=86_400, default=900)
    ] = 900,
) -> None:
    """Mint a single-use token with which a new key takes over this agent id (a lost key, a new disk).

    On the machine: fleetlink agent register --token <token> (a new state dir is fine)."""
    call.answer(
        lambda client: client.mint_recovery_token(resolve_agent(client, agent_ref), ttl_seconds=ttl),
        _print_recovery_token,
    )


def _print_recovery_token(minted: RecoveryTokenCreated) -> None:
    err().print(
        f"recovery token {minted.token_id} for {minted.agent_id}: "
        f"single use, expires {when(minted.expires_at)} "
        "[dim](shown once: keep it now)[/dim]\n"
        "On the machine: fleetlink agent register --token <this token>"
    )
    typer.echo(minted.token)


# deleting, restoring and upgrading agents (fleetlink.cli.operator.agent_lifecycle) add their commands here
from fleetlink.cli.operator import agent_lifecycle as _lifecycle  # noqa: E402, F401
