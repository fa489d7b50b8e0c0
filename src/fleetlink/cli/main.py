"""The ``fleetlink`` command line: ``fleetlink dev`` runs the whole stack locally; the agent and
operator groups (cli/agent.py, cli/operator/) join when the ``agent`` extra is installed.

Nothing here imports the server: ``dev`` loads the dev stack only when it runs.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from fleetlink.cli.params import install_help_types

app = typer.Typer(
    name="fleetlink",
    help="fleetlink: a serverless control plane for fleets of agents.",
    no_args_is_help=True,
)


def _print_version(value: bool) -> None:
    if value:
        import fleetlink

        typer.echo(f"fleetlink {fleetlink.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit"),
    ] = False,
) -> None:
    """fleetlink: a serverless control plane for fleets of agents."""


#: (command, module, sub-app attribute) of each group that needs the ``agent`` extra.
GROUPS = (
    ("agent", "fleetlink.cli.agent", "agent_app"),
    ("agents", "fleetlink.cli.operator.agents", "agents_app"),
    ("tokens", "fleetlink.cli.operator.tokens", "tokens_app"),
    ("tasks", "fleetlink.cli.operator.tasks", "tasks_app"),
    ("tunnels", "fleetlink.cli.operator.tunnels", "tunnels_app"),
    ("records", "fleetlink.cli.records", "records_app"),
    ("release", "fleetlink.cli.operator.releases", "release_app"),
    ("audit", "fleetlink.cli.audit", "audit_app"),
    ("console", "fleetlink.console.cli", "console_app"),
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
install_help_types()


def _banner(url: str, token: str, where_from: str, data: str) -> None:
    from rich.console import Console

    from fleetlink.cli.render import escape

    console = Console(soft_wrap=True, highlight=False)
    # The first line is for programs (and people) waiting for the server: keep it plain.
    console.print(f"fleetlink dev listening on {url}", markup=False)
    console.print(f"[bold]operator token[/bold] ({where_from}):")
    console.print(f"  {token}", markup=False)
    console.print(f"[bold]OpenAPI[/bold]   {url}/v1/openapi.json")
    console.print(f"[bold]Swagger UI[/bold] {url}/v1/docs")
    console.print(f"[bold]Data[/bold]       {escape(data)}")
    console.print("[bold]Next[/bold], in another shell: mint a registration token, register an agent:")
    commands = [
        f"export FLEETLINK_URL={url} FLEETLINK_OPERATOR_TOKEN={token} PATH=$PWD/.venv/bin:$PATH",
        "fleetlink tokens create --max-uses 5 --tag role=web",
        "fleetlink agent register --token <registration token>",
        "fleetlink agents ls",
    ]
    for command in commands:
        console.print(f"  {command}", markup=False)
    console.print("then run the agent daemon in a terminal of its own (it prints a line per task):")
    console.print("  fleetlink agent run", markup=False)
    console.print("and, back in the shell of the export, a task on every agent tagged role=web:")
    console.print("  fleetlink tasks run --target tag:role=web -- uptime", markup=False)
    console.print("Ctrl-C stops it.")
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
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="FLEETLINK_DEV_DATA_DIR",
            help="Where the table and the operator token are kept across restarts "
            "(default: .fleetlink/dev in the project, git-ignored)",
            show_default=False,
        ),
    ] = None,
    ephemeral: Annotated[
        bool, typer.Option("--ephemeral", help="Keep nothing: the data lives in memory and goes at Ctrl-C")
    ] = False,
    faults: Annotated[
        str | None,
        typer.Option(
            help="Inject DynamoDB faults, e.g. 'throttle=0.05,conflict=0.02,unprocessed=0.1,"
            "timeout=0.01,connect=0.01,stale=0.2,seed=7' (kinds: fleetlink.local.faults)",
        ),
    ] = None,
    dynamodb_endpoint: Annotated[
        str | None,
        typer.Option(
            help="Use this DynamoDB-compatible endpoint (e.g. DynamoDB Local at http://127.0.0.1:8000) "
            "instead of in-memory moto; the table is created there if missing",
        ),
    ] = None,
    operator: Annotated[
        list[str] | None,
        typer.Option(
            "--operator",
            help="A named operator token with a role, NAME:ROLE (viewer, operator or admin); repeatable. "
            "Kept in the data folder (operators.json); the generated token stays the admin's",
        ),
    ] = None,
) -> None:
    """Run the API locally: the Lambda handlers behind an HTTP server, on DynamoDB in moto.

    The data (agents, tokens, tasks) and the generated operator token are kept in --data-dir:
    every change is journaled (fsynced) before its answer, so a crash loses nothing acknowledged;
    restored at start, compacted every minute and at Ctrl-C. --ephemeral keeps nothing.
    """
    from fleetlink.cli.render import is_loopback_host
    from fleetlink.local.faults import FaultPlan
    from fleetlink.local.operators import parse_operator
    from fleetlink.local.persist import DataDirError
    from fleetlink.local.server import PROJECT_DIR, SAVE_EVERY_S, DevStack

    try:
        plan = FaultPlan.parse(faults) if faults else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults") from exc
    try:
        operators = dict(parse_operator(text) for text in operator or ())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--operator") from exc

    if not is_loopback_host(host):
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
    if ephemeral and data_dir is not None:
        raise typer.BadParameter("--ephemeral keeps nothing: leave out --data-dir", param_hint="--ephemeral")
    if dynamodb_endpoint is not None:  # that store keeps its own data
        data_dir = None
    elif not ephemeral and data_dir is None:
        data_dir = PROJECT_DIR / ".fleetlink" / "dev"
    stack = DevStack(
        host=host,
        port=port,
        table_name=table,
        operator_token=env_token,
        cleanup_every_s=cleanup_every,
        heartbeat_interval_s=heartbeat_interval,
        data_dir=data_dir,
        dynamodb_endpoint=dynamodb_endpoint,
        faults=plan,
        operators=operators,
    )
    try:
        try:
            stack.start()
        except DataDirError as exc:
            typer.secho(f"fleetlink dev: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from exc
        except OSError as exc:
            typer.secho(
                f"fleetlink dev: cannot listen on {host}:{port}: {exc}", err=True, fg=typer.colors.RED
            )
            raise typer.Exit(1) from exc
        if env_token is not None:
            where_from = "from FLEETLINK_OPERATOR_TOKEN"
        elif data_dir is not None:
            where_from = f"kept in {data_dir / 'operator-token'}; FLEETLINK_OPERATOR_TOKEN overrides it"
        else:
            where_from = "generated; FLEETLINK_OPERATOR_TOKEN sets it"
        if data_dir is None:
            data = "in memory only (--ephemeral): gone at Ctrl-C"
        else:
            restored = f"restored {stack.restored_items} items" if stack.restored_items else "new"
            if stack.replayed_items:
                restored += f", {stack.replayed_items} from the journal"
            data = f"{data_dir} ({restored}; journaled before each answer, saved every {SAVE_EVERY_S:g} s)"
        _banner(stack.url, stack.operator_token, where_from, data)
        for named in stack.operator_tokens.values():
            print(f"operator token {named.name} ({named.role}): {named.token}", flush=True)
        if plan is not None:
            typer.secho(f"injecting DynamoDB faults: {faults}", err=True, fg=typer.colors.YELLOW)
        while not stop.wait(0.5):
            pass
    finally:
        stack.stop()
        if stack.injector is not None and stack.injector.counts:
            print(f"faults injected:\n{stack.injector.summary()}", flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("fleetlink dev stopped", flush=True)


def main() -> None:
    """Entry point of the ``fleetlink`` script."""
    app()


if __name__ == "__main__":
    main()
