"""The ``fleetlink`` command line: ``fleetlink dev`` runs the whole stack locally; the agent and
operator groups (cli/agent.py, cli/operator/) join when the ``agent`` extra is installed.

Nothing here imports the server: ``dev`` loads the dev stack only when it runs.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer

app = typer.Typer(
    name="fleetlink",
    help="fleetlink: a serverless control plane for fleets of agents.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """fleetlink: a serverless control plane for fleets of agents."""


#: (command, module, sub-app attribute) of each group that needs the ``agent`` extra.
GROUPS = (
    ("agent", "fleetlink.cli.agent", "agent_app"),
    ("agents", "fleetlink.cli.operator.agents", "agents_app"),
    ("tokens", "fleetlink.cli.operator.tokens", "tokens_app"),
    ("tasks", "fleetlink.cli.operator.tasks", "tasks_app"),
    ("records", "fleetlink.cli.records", "records_app"),
)
#: What the agent extra adds; without it the groups are left out quietly.
AGENT_EXTRA = frozenset({"httpx", "httpcore"})


def _add_groups() -> None:
    """Mount the agent and operator groups (left out, quietly, without the ``agent`` extra)."""
    for name, module_name, attribute in GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if (exc.name or "").split(".")[0] not in AGENT_EXTRA:
                sys.stderr.write(f"fleetlink: {name} commands unavailable: {exc}\n")
            continue
        app.add_typer(getattr(module, attribute), name=name)


_add_groups()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _banner(url: str, token: str, token_from_env: bool) -> None:
    from rich.console import Console

    console = Console(soft_wrap=True, highlight=False)
    # The first line is for programs (and people) waiting for the server: keep it plain.
    console.print(f"fleetlink dev listening on {url}", markup=False)
    source = (
        "from FLEETLINK_OPERATOR_TOKEN" if token_from_env else "generated; FLEETLINK_OPERATOR_TOKEN sets it"
    )
    console.print(f"[bold]operator token[/bold] ({source}):")
    console.print(f"  {token}", markup=False)
    console.print(f"[bold]OpenAPI[/bold]   {url}/v1/openapi.json")
    console.print(f"[bold]Swagger UI[/bold] {url}/v1/docs")
    console.print("[bold]Next:[/bold] mint a registration token, register an agent, heartbeat, list agents:")
    commands = [
        f"export FLEETLINK_URL={url} FLEETLINK_OPERATOR_TOKEN={token} PATH=$PWD/.venv/bin:$PATH",
        "fleetlink tokens create --max-uses 5 --tag env=dev",
        "fleetlink agent register --url $FLEETLINK_URL --token <registration token>",
        "fleetlink agent heartbeat",
        "fleetlink agents ls",
        "fleetlink agent run &                          # the agent daemon: takes and runs tasks",
        "fleetlink tasks run --target tag:env=dev -- uptime",
    ]
    for command in commands:
        console.print(f"  {command}", markup=False)
    console.print("Ctrl-C stops it (the data lives in memory and goes with it).")
    sys.stdout.flush()


@app.command()
def dev(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port)", min=0, max=65535)] = 8080,
    table: Annotated[str, typer.Option(help="DynamoDB table name (in moto)")] = "fleetlink",
    cleanup_every: Annotated[
        float, typer.Option(help="Seconds between cleanup and TTL-expiry runs (0: never)", min=0)
    ] = 15.0,
    heartbeat_interval: Annotated[
        int,
        typer.Option(
            envvar="FLEETLINK_HEARTBEAT_INTERVAL_S",
            min=1,
            help="Seconds between agent heartbeats (agents learn of new tasks on each; AWS default 60)",
        ),
    ] = 5,
) -> None:
    """Run the API locally: the Lambda handlers behind an HTTP server, on in-memory DynamoDB (moto)."""
    from fleetlink.local.server import DevStack

    if not _is_loopback(host):
        typer.secho(
            f"warning: listening on {host}, not loopback: anyone who can reach it can use the dev stack",
            err=True,
            fg=typer.colors.YELLOW,
        )
    env_token = os.environ.get("FLEETLINK_OPERATOR_TOKEN") or None
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = DevStack(
        host=host,
        port=port,
        table_name=table,
        operator_token=env_token,
        cleanup_every_s=cleanup_every,
        heartbeat_interval_s=heartbeat_interval,
    )
    try:
        try:
            stack.start()
        except OSError as exc:
            typer.secho(
                f"fleetlink dev: cannot listen on {host}:{port}: {exc}", err=True, fg=typer.colors.RED
            )
            raise typer.Exit(1) from exc
        _banner(stack.url, stack.operator_token, token_from_env=env_token is not None)
        while not stop.wait(0.5):
            pass
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("fleetlink dev stopped", flush=True)


def main() -> None:
    """Entry point of the ``fleetlink`` script."""
    app()


if __name__ == "__main__":
    main()
