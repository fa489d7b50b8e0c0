"""``fleetlink tokens``: mint, list and revoke registration tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from fleetlink.cli.operator.command import ListCall, OperatorCall, list_command, operator_command
from fleetlink.cli.params import duration_option
from fleetlink.cli.render import (
    Column,
    TagOption,
    err,
    escape,
    format_tags,
    now_ms,
    out,
    parse_tags,
    print_table,
    when,
)
from fleetlink.cli.shared_options import command_group
from fleetlink.contract.agents import TokenSummary

tokens_app = command_group("Operator: registration tokens.")


@operator_command(tokens_app, "create", json_output=False)
def create_token(
    call: OperatorCall,
    ttl: Annotated[
        int, duration_option("--ttl", help="Lifetime: 10m, 2h, 7d", low=60, high=30 * 86_400, default=3600)
    ] = 3600,
    max_uses: Annotated[
        int,
        typer.Option("--max-uses", min=1, max=100_000, metavar="N", help="How many registrations it allows"),
    ] = 1,
    tag: TagOption = None,
    name_prefix: Annotated[
        str | None, typer.Option("--name-prefix", help="Agents get named <prefix>-<hostname>")
    ] = None,
) -> None:
    """Mint a registration token and print it (only now: it is stored hashed)."""
    tags = parse_tags(tag)
    with call.session() as client:
        created = client.create_token(ttl_seconds=ttl, max_uses=max_uses, tags=tags, name_prefix=name_prefix)
    err().print(
        f"token {created.token_id}: {created.max_uses} use(s), expires {when(created.expires_at)}"
        + (f", tags {escape(format_tags(created.tags))}" if created.tags else "")
        + " [dim](shown once: keep it now)[/dim]"
    )
    typer.echo(created.token)


def _token_state(token: TokenSummary, now: int) -> str:
    if token.revoked_at is not None:
        return "[red]revoked[/red]"
    if token.expires_at <= now:
        return "[dim]expired[/dim]"
    if token.uses >= token.max_uses:
        return "[dim]used up[/dim]"
    return "[green]usable[/green]"


@list_command(tokens_app, "ls")
def list_tokens(call: ListCall) -> None:
    """List registration and recovery tokens, newest first: uses, expiry, tags (never the secret).

    Cut at --limit with a hint naming the command that continues; --all reads every page."""
    with call.session() as client:
        taken = call.take(lambda size, at: client.list_tokens(limit=size, cursor=at))
    call.show("tokens ls", taken, _print_tokens, empty="no tokens")


def _print_tokens(tokens: list[TokenSummary]) -> None:
    now = now_ms()
    columns = [Column("ID"), Column("STATE"), Column("USES", justify="right"), Column("EXPIRES")]
    columns += [Column("TAGS", fold=True), Column("NAME PREFIX")]
    rows = [
        [
            token.token_id,
            _token_state(token, now),
            f"{token.uses}/{token.max_uses}",
            when(token.expires_at),
            escape(format_tags(token.tags)),
            escape(token.name_prefix or "-"),
        ]
        for token in tokens
    ]
    print_table(columns, rows)


@operator_command(tokens_app, "revoke", json_output=False)
def revoke_token(
    call: OperatorCall,
    token_id: Annotated[str, typer.Argument(help="Token id (tok_...), as `fleetlink tokens ls` shows it")],
) -> None:
    """Revoke a registration token: registrations with it fail from now on (idempotent)."""
    with call.session() as client:
        token = client.revoke_token(token_id)
    out().print(f"{token.token_id} revoked at {when(token.revoked_at)}")
