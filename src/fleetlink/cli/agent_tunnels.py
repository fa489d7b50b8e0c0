"""``fleetlink agent tunnels``: this machine's tunnels as the agent last knew them (from agent.db)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from fleetlink.agent.db import db_path
from fleetlink.agent.identity import IdentityStore
from fleetlink.agent.tunnels.store import TunnelStore
from fleetlink.cli.options import StateDirOption
from fleetlink.cli.render import (
    HEALTH_STYLE,
    fail,
    out,
    reporting_errors,
    styled,
    when,
)


def local_tunnels(
    state_dir: StateDirOption = None,
    events: Annotated[int, typer.Option("--events", min=0, help="Also show this many recent events")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """This machine's tunnels as the agent last knew them (from agent.db; works offline)."""
    path = db_path(IdentityStore(state_dir).path)
    if not path.exists():
        raise fail(f"no agent database at {path}: run `fleetlink agent run` first")
    with reporting_errors():
        store = TunnelStore.open(path)
    try:
        tunnels = store.tunnels()
        recent = store.events(limit=events) if events else []
    finally:
        store.close()
    if as_json:
        rows = [
            {
                "tunnel_id": t.spec.tunnel_id,
                "provider": t.spec.provider.value,
                "name": t.spec.name,
                "mode": t.spec.mode.value,
                "enabled": t.spec.enabled,
                "local_target": t.spec.local_target,
                "routes": [r.__dict__ for r in t.spec.routes],
                "health": t.status.health.value,
                "public_url": t.status.public_url,
                "error_code": t.status.error_code,
                "error_message": t.status.error_message,
                "reported": t.status_sent_seq >= t.status_seq,
                "updated_at": t.updated_at,
            }
            for t in tunnels
        ]
        payload: dict[str, object] = {"tunnels": rows}
        if events:
            payload["events"] = [
                e.__dict__ | {"level": e.level.value, "event_type": e.event_type.value} for e in recent
            ]
        out().print_json(json.dumps(payload))
        return
    table = Table(title=f"tunnels on this machine ({len(tunnels)})")
    for column in (
        "tunnel",
        "provider",
        "name",
        "mode",
        "enabled",
        "health",
        "public url",
        "target",
        "routes",
        "error",
    ):
        table.add_column(column, overflow="fold")
    for t in tunnels:
        table.add_row(
            t.spec.tunnel_id,
            t.spec.provider.value,
            escape(t.spec.name),
            t.spec.mode.value,
            "yes" if t.spec.enabled else "no",
            styled(t.status.health.value, HEALTH_STYLE),
            escape(t.status.public_url or "-"),
            escape(t.spec.local_target),
            str(len(t.spec.routes)),
            escape(t.status.error_code or ""),
        )
    out().print(table)
    if recent:
        events_table = Table(title="recent events")
        for column in ("when", "tunnel", "level", "type", "message"):
            events_table.add_column(column, overflow="fold")
        for e in recent:
            events_table.add_row(
                when(e.created_at), e.tunnel_id or "-", e.level.value, e.event_type.value, escape(e.message)
            )
        out().print(events_table)
