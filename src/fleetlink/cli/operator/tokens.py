"""``fleetlink tokens``: registration tokens."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from fleetlink.cli.operator import OperatorTokenOption, UrlOption, operator_client
from fleetlink.cli.render import TagOption, err, format_tags, parse_tags, reporting_errors, when

tokens_app = typer.Typer(help="Operator: registration tokens.", no_args_is_help=True)


@tokens_app.callback()
def tokens() -> None:
    """Operator: registration tokens."""  # a callback keeps `create` a subcommand when it is the only one


@tokens_app.command("create")
def create_token(
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
    ttl: Annotated[int, typer.Option("--ttl", min=60, help="Lifetime in seconds")] = 3600,
    max_uses: Annotated[int, typer.Option("--max-uses", min=1, help="How many registrations it allows")] = 1,
    tag: TagOption = None,
    name_prefix: Annotated[
        str | None, typer.Option("--name-prefix", help="Agents get named <prefix>-<hostname>")
    ] = None,
) -> None:
    """Mint a registration token and print it (only now: it is stored hashed)."""
    tags = parse_tags(tag)
    with reporting_errors(), operator_client(url, operator_token) as client:
        created = client.create_token(ttl_seconds=ttl, max_uses=max_uses, tags=tags, name_prefix=name_prefix)
    err().print(
        f"token {created.token_id}: {created.max_uses} use(s), expires {when(created.expires_at)}"
        + (f", tags {escape(format_tags(created.tags))}" if created.tags else "")
        + " [dim](shown once: keep it now)[/dim]"
    )
    typer.echo(created.token)
