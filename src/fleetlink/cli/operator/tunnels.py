"""``fleetlink tunnels``: create, list, inspect, enable, disable and delete agents' tunnels; their
events and the fleet's health summary. A secret given here is sent once and sealed to the agent by
the API; it is never printed."""

from __future__ import annotations

import itertools
import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from fleetlink.cli.operator import OperatorTokenOption, UrlOption, operator_client
from fleetlink.cli.render import HEALTH_STYLE, ago, err, escape, now_ms, out, reporting_errors, styled, when
from fleetlink.contract.tunnels import Event, Health, Mode, Provider, Tunnel

tunnels_app = typer.Typer(
    help="Operator: agents' tunnels, their events and the fleet's health.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]
TunnelIdArgument = Annotated[str, typer.Argument(help="Tunnel id (tun_...)")]


def _route(value: str) -> dict[str, Any]:
    """``/prefix=host:port`` or ``/prefix=host:port@priority``."""
    prefix, sep, rest = value.partition("=")
    if not sep or not rest:
        raise typer.BadParameter(f"{value!r} is not /prefix=host:port[@priority]", param_hint="--route")
    target, _, priority = rest.partition("@")
    if priority and not priority.isdigit():
        raise typer.BadParameter(f"{value!r}: priority must be a number", param_hint="--route")
    return {"path_prefix": prefix, "local_target": target, "priority": int(priority or 0)}


def _print_json(value: Any) -> None:
    out().print_json(json.dumps(value))


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
        if tunnel.last_error_code
        else "-",
        "created": when(tunnel.created_at),
        "updated": when(tunnel.updated_at),
    }


def _show(tunnel: Tunnel, as_json: bool) -> None:
    if as_json:
        _print_json(tunnel.model_dump(mode="json"))
        return
    details = Table(show_header=False, box=None)
    details.add_column(style="bold", no_wrap=True)
    details.add_column(overflow="fold")
    for field, value in _tunnel_rows(tunnel).items():
        details.add_row(field, styled(value, HEALTH_STYLE) if field == "health" else escape(value))
    out().print(details)
    if tunnel.routes:
        routes = Table(title="Routes (longest prefix wins, then priority)", title_justify="left")
        for column in ("PREFIX", "TARGET", "PRIORITY", "ENABLED", "ID"):
            routes.add_column(column, overflow="fold")
        for r in sorted(tunnel.routes, key=lambda r: (-len(r.path_prefix), -r.priority)):
            routes.add_row(
                escape(r.path_prefix), escape(r.local_target), str(r.priority), str(r.enabled), r.route_id
            )
        out().print(routes)


@tunnels_app.command("create")
def create_tunnel(
    agent_id: Annotated[str, typer.Argument(help="Agent id (agt_...)")],
    name: Annotated[str, typer.Option("--name", help="Unique per agent and provider")],
    target: Annotated[str, typer.Option("--target", help="The local service, host:port")],
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
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
    as_json: JsonOption = False,
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
    with reporting_errors(), operator_client(url, operator_token) as client:
        tunnel = client.create_tunnel(agent_id, spec)
    if not as_json:
        err().print(f"[green]created[/green] {tunnel.tunnel_id}")
    _show(tunnel, as_json)


@tunnels_app.command("ls")
def list_tunnels(
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's")] = None,
    provider: Annotated[Provider | None, typer.Option("--provider")] = None,
    health: Annotated[Health | None, typer.Option("--health")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Only enabled / disabled")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List tunnels with their health (a silent agent's tunnels read unknown)."""
    filters: dict[str, Any] = {
        "agent_id": agent,
        "provider": provider.value if provider else None,
        "health": health.value if health else None,
        "enabled": enabled,
        "limit": min(limit, 100),
    }
    with reporting_errors(), operator_client(url, operator_token) as client:
        tunnels = list(itertools.islice(client.iter_tunnels(**filters), limit))
    if as_json:
        _print_json([t.model_dump(mode="json") for t in tunnels])
        return
    if not tunnels:
        err().print("no tunnels")
        return
    table = Table()
    for column in (
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
    ):
        table.add_column(column, overflow="fold")
    for t in tunnels:
        table.add_row(
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
        )
    out().print(table)


@tunnels_app.command("show")
def show_tunnel(
    tunnel_id: TunnelIdArgument,
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one tunnel and its routes."""
    with reporting_errors(), operator_client(url, operator_token) as client:
        tunnel = client.get_tunnel(tunnel_id)
    _show(tunnel, as_json)


def _events_table(events: list[Event], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("WHEN", "TUNNEL", "LEVEL", "TYPE", "MESSAGE"):
        table.add_column(column, overflow="fold")
    level_style = {"error": "red", "warn": "yellow", "info": "dim"}
    for e in events:
        table.add_row(
            when(e.created_at),
            e.tunnel_id or "-",
            styled(e.level.value, level_style),
            e.event_type.value,
            escape(e.message),
        )
    return table


@tunnels_app.command("events")
def tunnel_events(
    url: UrlOption,
    tunnel_id: Annotated[str | None, typer.Argument(help="A tunnel (default: the whole fleet)")] = None,
    operator_token: OperatorTokenOption = None,
    errors: Annotated[bool, typer.Option("--errors", help="Fleet-wide: only errors")] = False,
    hours: Annotated[float, typer.Option("--hours", min=0.0, help="Fleet-wide: look back this far")] = 24.0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100)] = 50,
    as_json: JsonOption = False,
) -> None:
    """A tunnel's events, or the fleet's recent events (or errors), newest first."""
    with reporting_errors(), operator_client(url, operator_token) as client:
        if tunnel_id:
            page = client.tunnel_events(tunnel_id, limit=limit)
        else:
            since = now_ms() - int(hours * 3_600_000)
            page = client.fleet_events(errors=errors, since=since, limit=limit)
    if as_json:
        _print_json([e.model_dump(mode="json") for e in page.items])
        return
    title = (
        f"events of {tunnel_id}"
        if tunnel_id
        else ("errors" if errors else "events") + f" of the last {hours:g} h"
    )
    out().print(_events_table(page.items, title + " (newest first)"))


def _set_enabled(
    tunnel_id: str, url: str | None, operator_token: str | None, enabled: bool, as_json: bool
) -> None:
    with reporting_errors(), operator_client(url, operator_token) as client:
        tunnel = client.patch_tunnel(tunnel_id, {"enabled": enabled})
    _show(tunnel, as_json)


@tunnels_app.command("enable")
def enable_tunnel(
    tunnel_id: TunnelIdArgument,
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Enable a tunnel: its agent starts it."""
    _set_enabled(tunnel_id, url, operator_token, True, as_json)


@tunnels_app.command("disable")
def disable_tunnel(
    tunnel_id: TunnelIdArgument,
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Disable a tunnel: its agent stops it (the declaration stays)."""
    _set_enabled(tunnel_id, url, operator_token, False, as_json)


@tunnels_app.command("rm")
def delete_tunnel(
    tunnel_id: TunnelIdArgument, url: UrlOption, operator_token: OperatorTokenOption = None
) -> None:
    """Delete a tunnel: its agent stops it and forgets it."""
    with reporting_errors(), operator_client(url, operator_token) as client:
        client.delete_tunnel(tunnel_id)
    err().print(f"deleted {tunnel_id}")


@tunnels_app.command("health")
def fleet_health(
    url: UrlOption, operator_token: OperatorTokenOption = None, as_json: JsonOption = False
) -> None:
    """The fleet's tunnels counted by provider and health."""
    with reporting_errors(), operator_client(url, operator_token) as client:
        summary = client.tunnels_health()
    if as_json:
        _print_json(summary.model_dump(mode="json"))
        return
    healths = list(Health)
    table = Table(title=f"{summary.total} tunnels, {summary.enabled} enabled", title_justify="left")
    table.add_column("PROVIDER")
    for health in healths:
        table.add_column(styled(health.value, HEALTH_STYLE), justify="right")
    table.add_column("TOTAL", justify="right")
    cells = {(row.provider, row.health): row.count for row in summary.counts}
    for provider in Provider:
        counts = [cells.get((provider, health), 0) for health in healths]
        table.add_row(provider.value, *(str(n) for n in counts), str(summary.by_provider[provider]))
    table.add_row("all", *(str(summary.by_health[h]) for h in healths), str(summary.total), style="bold")
    out().print(table)
