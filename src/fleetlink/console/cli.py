"""``fleetlink console``: start the local web console (needs the ``console`` extra)."""

from __future__ import annotations

import secrets
import socket
import sys
from typing import Annotated

import typer

from fleetlink.cli.operator import OperatorTokenOption, UrlOption, operator_client
from fleetlink.cli.render import CallContext, is_loopback_host, reporting_errors

console_app = typer.Typer(help="Operator: the local web console.")

#: The line programs (and tests) wait for: the URL, with the session key, follows it.
LISTENING = "fleetlink console on "


@console_app.callback(invoke_without_command=True)
def console(
    url: UrlOption = None,
    operator_token: OperatorTokenOption = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on (loopback: only this machine)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port)", min=0, max=65535)] = 8090,
    role: Annotated[
        str | None,
        typer.Option(
            help="Against a deployed stack, the role your IAM policies grant (viewer, operator, admin): "
            "the console then hides what it cannot do. The dev stack tells the console itself"
        ),
    ] = None,
    sample_every: Annotated[
        float, typer.Option(help="Seconds between samples of the fleet's liveness (the chart)", min=0.2)
    ] = 10.0,
) -> None:
    """Serve the console on this machine; it calls the API with your credentials (token or AWS SigV4)."""
    try:
        import uvicorn

        from fleetlink.console.app import ConsoleState, build_app, permissions_of
    except ImportError as exc:
        typer.secho(
            f"fleetlink console needs the console extra ({exc.name} is missing): "
            "pip install 'fleetlink[console]'",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(1) from exc
    from fleetlink.console.fleet import LivenessHistory
    from fleetlink.core.roles import parse_role

    try:
        role_override = parse_role(role) if role else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--role") from exc
    if not is_loopback_host(host):
        typer.secho(
            f"warning: listening on {host}, not loopback: anyone who can reach it and holds the session "
            "key acts with your credentials",
            err=True,
            fg=typer.colors.YELLOW,
        )
    with reporting_errors(CallContext(url=url)):
        client = operator_client(url, operator_token)
        actor, permissions = permissions_of(client, role_override)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)  # connections wait in the backlog until the server accepts them
    except OSError as exc:
        typer.secho(
            f"fleetlink console: cannot listen on {host}:{port}: {exc}", err=True, fg=typer.colors.RED
        )
        raise typer.Exit(1) from exc
    bound = listener.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    hosts = {f"{shown}:{bound}", f"localhost:{bound}"} | (
        {f"127.0.0.1:{bound}"} if is_loopback_host(host) else set()
    )
    state = ConsoleState(
        client=client,
        api_url=str(url),
        session_key=secrets.token_urlsafe(24),
        permissions=permissions,
        actor=actor,
        history=LivenessHistory(every_s=sample_every),
        allowed_hosts=frozenset(hosts),
    )
    print(f"{LISTENING}http://{shown}:{bound}/?key={state.session_key}", flush=True)
    print(f"as {actor} ({permissions.role or 'IAM decides'}); Ctrl-C stops it", flush=True)
    server = uvicorn.Server(uvicorn.Config(build_app(state), log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[listener])
    finally:
        client.close()
        sys.stdout.flush()
