"""``fleetlink tunnels``: create, list, inspect, enable, disable and delete agents' tunnels; their
events and the fleet's health summary. A secret given here is sent once and sealed to the agent by
the API; it is never printed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

import typer

from fleetlink.cli.names import AgentArgument, resolve_agent
from fleetlink.cli.operator.command import ListCall, OperatorCall, list_command, operator_command
from fleetlink.cli.render import (
    HEALTH_STYLE,
    Column,
    ago,
    err,
    escape,
    now_ms,
    print_details,
    print_table,
    styled,
    when,
)
from fleetlink.client.operator import TunnelFilters
from fleetlink.contract.tunnels import Event, Health, HealthSummary, Mode, Provider, Tunnel

tunnels_app = typer.Typer(
    help="Operator: agents' tunnels, their events and the fleet's health.", no_args_is_help=True
)

TunnelIdArgument = Annotated[str, typer.Argument(metavar="TUNNEL", help="Tunnel id (tun_...)")]


def _route(value: str) -> dict[str, Any]:
    """``/prefix=host:port`` or ``/prefix=host:port@priority``."""
    prefix, sep, rest = value.partition("=")
    if not sep or not rest:
        raise typer.BadParameter(f"{value!r} is not /prefix=host:port[@priority]", param_hint="--route")
    target, _, priority = rest.partition("@")
    if priority and not priority.isdigit():
        raise typer.BadParameter(f"{value!r}: priority must be a number", param_hint="--route")
    return {"path_prefix": prefix, "local_target": target, "priority": int(priority or 0)}


def _tunnel_rows(tunnel: Tunnel) -> dict[str, str]:
    return {
        "id": tunnel.tunnel_id,
        "agent": tunnel.agent_id,
        "provider": tunnel.provider.value,
        "name": tunnel.name,
        "mode": tunnel.mode.value,
        "enabled": "yes" if tunnel.enabled else "no",
        "health": tunnel.health.value,
        "public url": tunnel.public_url or "-",
        "public hostname": tunnel.public_hostname or "-",
        "local target": tunnel.local_target,
        "agent last seen": ago(tunnel.last_heartbeat_at) if tunnel.last_heartbeat_at else "never",
        "last error": f"{tunnel.last_error_code}: {tunnel.last_error_message or ''}"
        if tunnel.last_error_code and tunnel.health is not Health.UP
        else "-",  # an error before the tunnel came up again is history (tunnels events)
        "created": when(tunnel.created_at),
        "updated": when(tunnel.updated_at),
    }


def _show(tunnel: Tunnel) -> None:
    rows = _tunnel_rows(tunnel)
    print_details(
        {
            field: styled(value, HEALTH_STYLE) if field == "health" else escape(value)
            for field, value in rows.items()
        }
    )
    if tunnel.routes:
        routes = sorted(tunnel.routes, key=lambda r: (-len(r.path_prefix), -r.priority))
        print_table(
            [Column(name) for name in ("PREFIX", "TARGET", "PRIORITY", "ENABLED", "ID")],
            [
                [escape(r.path_prefix), escape(r.local_target), str(r.priority), str(r.enabled), r.route_id]
                for r in routes
            ],
            title="Routes (longest prefix wins, then priority)",
        )


@operator_command(tunnels_app, "create")
def create_tunnel(
    call: OperatorCall,
    agent_ref: AgentArgument,
    name: Annotated[str, typer.Option("--name", help="Unique per agent and provider")],
    target: Annotated[str, typer.Option("--target", help="The local service, host:port")],
    provider: Annotated[Provider, typer.Option("--provider")] = Provider.SELF_HOSTED,
    mode: Annotated[Mode, typer.Option("--mode")] = Mode.HTTP,
    route: Annotated[
        list[str] | None, typer.Option("--route", help="/prefix=host:port[@priority], repeatable")
    ] = None,
    hostname: Annotated[str | None, typer.Option("--hostname", help="Public hostname")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled")] = False,
    secret_stdin: Annotated[
        bool, typer.Option("--secret-stdin", help="Read the provider credential from stdin (never argv)")
    ] = False,
) -> None:
    """Create a tunnel for an agent; it starts within the agent's next heartbeat."""
    spec: dict[str, Any] = {
        "provider": provider.value,
        "name": name,
        "mode": mode.value,
        "local_target": target,
        "enabled": not disabled,
        "routes": [_route(value) for value in route or []],
    }
    if hostname:
        spec["public_hostname"] = hostname
    if secret_stdin:
        spec["secret"] = sys.stdin.read().strip()
    call.answer(lambda client: client.create_tunnel(resolve_agent(client, agent_ref), spec), _show_created)


def _show_created(tunnel: Tunnel) -> None:
    err().print(f"[green]created[/green] {tunnel.tunnel_id}")
    _show(tunnel)


@list_command(tunnels_app, "ls")
def list_tunnels(
    call: ListCall,
    agent: Annotated[
        str | None, typer.Option("--agent", metavar="AGENT", help="Only this agent's (id or name)")
    ] = None,
    provider: Annotated[Provider | None, typer.Option("--provider")] = None,
    health: Annotated[Health | None, typer.Option("--health")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Only enabled / disabled")
    ] = None,
) -> None:
    """List tunnels with their health (a silent agent's tunnels read unknown), in the API's order.

    Cut at --limit with a hint naming the command that continues; --all reads every page."""
    filters: TunnelFilters = {
        "provider": provider.value if provider else None,
        "health": health.value if health else None,
        "enabled": enabled,
    }
    with call.session() as client:
        filters["agent_id"] = resolve_agent(client, agent) if agent else None
        taken = call.take(lambda size, at: client.list_tunnels(limit=size, cursor=at, **filters))
    options = [
        *(["--agent", agent] if agent else []),
        *(["--provider", provider.value] if provider else []),
        *(["--health", health.value] if health else []),
        *([] if enabled is None else ["--enabled" if enabled else "--disabled"]),
    ]
    call.show("tunnels ls", taken, _print_tunnels, options=options, empty="no tunnels")


def _print_tunnels(tunnels: list[Tunnel]) -> None:
    columns = [
        "ID",
        "AGENT",
        "PROVIDER",
        "NAME",
        "MODE",
        "ENABLED",
        "HEALTH",
        "PUBLIC URL",
        "TARGET",
        "ROUTES",
    ]
    print_table(
        [Column(name, fold=name in ("PUBLIC URL", "TARGET")) for name in columns],
        [
            [
                t.tunnel_id,
                t.agent_id,
                t.provider.value,
                escape(t.name),
                t.mode.value,
                "yes" if t.enabled else "no",
                styled(t.health.value, HEALTH_STYLE),
                escape(t.public_url or "-"),
                escape(t.local_target),
                str(len(t.routes)),
            ]
            for t in tunnels
        ],
    )


@operator_command(tunnels_app, "show")
def show_tunnel(call: OperatorCall, tunnel_id: TunnelIdArgument) -> None:
    """Show one tunnel and its routes."""
    call.answer(lambda client: client.get_tunnel(tunnel_id), _show)


def _print_events(events: list[Event], title: str) -> None:
    level_style = {"error": "red", "warn": "yellow", "info": "dim"}
    print_table(
        [Column("WHEN"), Column("TUNNEL"), Column("LEVEL"), Column("TYPE"), Column("MESSAGE", fold=True)],
        [
            [
                when(e.created_at),
                e.tunnel_id or "-",
                styled(e.level.value, level_style),
                e.event_type.value,
                escape(e.message),
            ]
            for e in events
        ],
        title=title,
    )


@list_command(tunnels_app, "events")
def tunnel_events(
    call: ListCall,
    tunnel_id: Annotated[
        str | None, typer.Argument(metavar="TUNNEL", help="A tunnel (default: the whole fleet)")
    ] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Fleet-wide: only errors")] = False,
    hours: Annotated[
        float, typer.Option("--hours", min=0.0, metavar="HOURS", help="Fleet-wide: look back this far")
    ] = 24.0,
) -> None:
    """A tunnel's events, or the fleet's recent events (or errors), newest first.

    Cut at --limit with a hint naming the command that continues; --all reads every page."""
    since = now_ms() - int(hours * 3_600_000)
    with call.session() as client:
        taken = call.take(
            lambda size, at: (
                client.tunnel_events(tunnel_id, limit=size, cursor=at)
                if tunnel_id
                else client.fleet_events(errors=errors, since=since, limit=size, cursor=at)
            )
        )
    options = [*([tunnel_id] if tunnel_id else []), *(["--errors"] if errors else [])]
    options += [] if tunnel_id or hours == 24.0 else ["--hours", f"{hours:g}"]
    title = (
        f"events of {tunnel_id}"
        if tunnel_id
        else ("errors" if errors else "events") + f" of the last {hours:g} h"
    )
    call.show(
        "tunnels events", taken, partial(_print_events, title=title + " (newest first)"), options=options
    )


def _enabling(enabled: bool) -> Callable[..., None]:
    """The command that enables (or disables) a tunnel: one body for both."""

    def set_enabled(call: OperatorCall, tunnel_id: TunnelIdArgument) -> None:
        call.answer(lambda client: client.patch_tunnel(tunnel_id, {"enabled": enabled}), _show)

    return set_enabled


operator_command(tunnels_app, "enable", help="Enable a tunnel: its agent starts it.")(_enabling(True))
operator_command(
    tunnels_app, "disable", help="Disable a tunnel: its agent stops it (the declaration stays)."
)(_enabling(False))


@operator_command(tunnels_app, "rm", json_output=False)
def delete_tunnel(call: OperatorCall, tunnel_id: TunnelIdArgument) -> None:
    """Delete a tunnel: its agent stops it and forgets it."""
    with call.session() as client:
        client.delete_tunnel(tunnel_id)
    err().print(f"deleted {tunnel_id}")


@operator_command(tunnels_app, "health")
def fleet_health(call: OperatorCall) -> None:
    """The fleet's tunnels counted by provider and health."""
    call.answer(lambda client: client.tunnels_health(), _print_health)


def _print_health(summary: HealthSummary) -> None:
    healths = list(Health)
    cells = {(row.provider, row.health): row.count for row in summary.counts}
    rows = [
        [
            provider.value,
            *(str(cells.get((provider, health), 0)) for health in healths),
            str(summary.by_provider[provider]),
        ]
        for provider in Provider
    ]
    rows.append(["all", *(str(summary.by_health[h]) for h in healths), str(summary.total)])
    print_table(
        [
            Column("PROVIDER"),
            *(Column(h.value, justify="right") for h in healths),
            Column("TOTAL", justify="right"),
        ],
        rows,
        title=f"{summary.total} tunnels, {summary.enabled} enabled",
    )
