"""``fleetlink audit ls``: the fleet-wide audit log of operator writes, newest first."""

from __future__ import annotations

import datetime
import itertools
import json
from typing import Annotated

import typer
from rich.markup import escape

from fleetlink.cli.operator.command import OperatorCall, operator_command
from fleetlink.cli.render import (
    Column,
    err,
    print_table,
    when,
)
from fleetlink.cli.shared_options import command_group
from fleetlink.client.operator import AuditFilters
from fleetlink.core.audit import AuditRecord

audit_app = command_group("Operator: the audit log of every operator write.")


def parse_moment(text: str | None, option: str) -> int | None:
    """Epoch milliseconds, or an ISO 8601 time (UTC unless it names a zone)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: give epoch milliseconds or an ISO 8601 time, e.g. 2026-12-06T10:00", param_hint=option
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def describe_changes(entry: AuditRecord) -> str:
    """``field: old -> new`` for each changed field, compact."""
    return "; ".join(
        f"{name}: {json.dumps(change.old)} -> {json.dumps(change.new)}"
        for name, change in entry.changes.items()
    )


@operator_command(audit_app, "ls")
def list_audit(
    call: OperatorCall,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Who: an IAM ARN, or a dev token's name")
    ] = None,
    resource: Annotated[
        str | None, typer.Option("--resource", help="A resource id (agt_, tsk_, tun_...)")
    ] = None,
    action: Annotated[str | None, typer.Option("--action", help="e.g. task.create, agent.revoke")] = None,
    since: Annotated[str | None, typer.Option("--since", help="From (epoch ms or ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Until (epoch ms or ISO 8601)")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many entries")] = 50,
) -> None:
    """Who did what to which resource, when, from where, and what changed (old -> new)."""
    filters: AuditFilters = {
        "actor": actor,
        "resource": resource,
        "action": action,
        "since": parse_moment(since, "--since"),
        "until": parse_moment(until, "--until"),
    }
    call.answer(
        lambda client: list(itertools.islice(client.iter_audit(page_size=min(limit, 100), **filters), limit)),
        _print_entries,
    )


def _print_entries(entries: list[AuditRecord]) -> None:
    if not entries:
        err().print("no audit entries")
        return
    columns = [Column("WHEN"), Column("ACTOR", max_width=40), Column("ACTION"), Column("RESOURCE")]
    columns += [Column("FROM"), Column("CHANGES", fold=True)]
    rows = [
        [
            when(entry.at),
            escape(entry.actor),
            escape(entry.action) + ("" if entry.success else " [red](failed)[/red]"),
            escape(entry.target_id),
            escape(entry.source_ip or "-"),
            escape(describe_changes(entry) or "-"),
        ]
        for entry in entries
    ]
    print_table(columns, rows)
