"""``fleetlink agent``: this machine as an agent (register, heartbeat, run the daemon, whoami).

Secrets (the private key) are never printed; API errors print the problem's title and detail in red
and exit 1.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fleetlink.agent.app import (
    AgentOptions,
    AlreadyRunning,
    NotRegistered,
    agent_client,
    build_agent,
    host_metrics,
    only_runner,
)
from fleetlink.agent.daemon import (
    DEFAULT_FIRST_BEAT_JITTER_S,
    DEFAULT_INTERVAL_S,
)
from fleetlink.agent.db import db_path
from fleetlink.agent.db_check import DamagedDatabase, check_state_db
from fleetlink.agent.disk import StateDirHealth
from fleetlink.agent.hardware import collect_hardware, fingerprint
from fleetlink.agent.identity import Identity, IdentityStore, state_dir_slug
from fleetlink.agent.relay.store import RecordStore, SyncHealth
from fleetlink.agent.tasks.handlers import HandlerRegistry
from fleetlink.agent.tasks.service import CANCELLED, MAX_CONCURRENCY, RunnerEvent
from fleetlink.agent.tunnels.store import EventRecord
from fleetlink.auth.sealing import (
    encryption_public_key_pem,
    load_or_create_encryption_key,
)
from fleetlink.cli.agent_keys import key_fingerprint, rotate_key
from fleetlink.cli.agent_service import install_service
from fleetlink.cli.agent_tunnels import local_tunnels
from fleetlink.cli.handlers import add_handlers
from fleetlink.cli.options import StateDirOption
from fleetlink.cli.records import last_error_text
from fleetlink.cli.render import (
    EXECUTION_STYLE,
    CallContext,
    JsonOption,
    OutputFormat,
    OutputOption,
    TagOption,
    ago,
    api_failure,
    connection_failure,
    duration,
    err,
    escape,
    fail,
    first_line,
    out,
    parse_tags,
    print_details,
    reporting_errors,
    styled,
    wants_json,
    when,
)
from fleetlink.client.agent import FleetlinkClient
from fleetlink.client.http import FleetlinkApiError, FleetlinkClientError, FleetlinkConnectionError, api_root
from fleetlink.contract.agents import HeartbeatAck
from fleetlink.core.entities import KeyAlg

agent_app = typer.Typer(
    help="This machine as a fleetlink agent: register, heartbeat, run, install-service, whoami.",
    no_args_is_help=True,
)


# --- agent ---------------------------------------------------------------------------------------


@agent_app.command()
def register(
    url: Annotated[
        str | None,
        typer.Option("--url", envvar="FLEETLINK_URL", help="API base URL (default: the saved identity's)"),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="FLEETLINK_REGISTRATION_TOKEN",
            help="Registration token (not needed to re-register the same key on the same machine)",
            show_default=False,
        ),
    ] = None,
    tag: TagOption = None,
    name: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Agent name (default: <token's name prefix>-<hostname>, plus -<state dir name> for a "
            "state dir other than the default, so two agents of one host differ)",
        ),
    ] = None,
    alg: Annotated[
        KeyAlg | None, typer.Option("--alg", help="Key algorithm for a new key (default: ed25519)")
    ] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Register this machine (creating its key if absent) and save its identity; prints the agent id."""
    tags = parse_tags(tag)
    store = IdentityStore(state_dir)
    with reporting_errors():
        previous = store.load_identity()
        api_url = url or (previous.api_url if previous else None)
        if not api_url:
            raise fail("no API URL: pass --url or set FLEETLINK_URL")
        had_key = store.load_key() is not None
        key, key_alg = store.load_or_create_key(alg)
        # Secrets for this agent (tunnel credentials) are sealed to this X25519 key; it stays here.
        encryption_key = load_or_create_encryption_key(store.path)
        hardware = collect_hardware(store.path)
        agent_fingerprint = fingerprint(hardware)
        # the saved agent re-registers by its key (no token); a new key registers with the token
        same_api = previous is not None and previous.api_url == api_root(api_url)
        known_as = previous.agent_id if previous and had_key and same_api else None
        if known_as is None and not token:
            raise fail(
                "a new agent needs a registration token",
                fix="fleetlink agent register --token <token>, with a token an operator minted "
                "(fleetlink tokens create); or set FLEETLINK_REGISTRATION_TOKEN",
            )
        context = CallContext(url=api_url, registering=known_as is None)
        with reporting_errors(context), FleetlinkClient(api_url) as client:
            result = client.register(
                token,
                hardware,
                key,
                key_alg,
                tags=tags,
                name=name,
                fingerprint=agent_fingerprint,
                agent_id=known_as,
                name_suffix=state_dir_slug(store.path),
                encryption_public_key=encryption_public_key_pem(encryption_key),
            )
        store.save_identity(
            Identity(
                agent_id=result.agent_id,
                api_url=client.base_url,
                key_alg=key_alg,
                fingerprint=agent_fingerprint,
                registered_at=result.server_time,
            )
        )
    score = result.similarity_score
    how = "registered" if score is None else f"re-registered (similarity {score})"
    named = f" ({escape(result.name)})" if result.name else ""
    err().print(
        f"[green]{how}[/green] as {result.agent_id}{named}; identity saved in {escape(str(store.path))}"
    )
    for warning in result.warnings:
        err().print(f"[yellow]warning: {escape(warning)}[/yellow]")
    typer.echo(result.agent_id)


def _print_ack(ack: HeartbeatAck, as_json: bool) -> None:
    if as_json:
        out().print_json(ack.model_dump_json())
        return
    out().print(
        f"heartbeat ok at {when(ack.server_time)}: next in {ack.heartbeat_interval_s}s, "
        f"{ack.pending_executions} pending executions, tunnels version {ack.tunnels_version}"
    )


def _agent_context(identity: Identity, state_dir: Path | None) -> CallContext:
    return CallContext(url=identity.api_url, agent_id=identity.agent_id, state_dir=state_dir)


def _load_agent(store: IdentityStore) -> tuple[Identity, FleetlinkClient]:
    try:
        return agent_client(store)
    except NotRegistered as exc:
        raise fail(
            str(exc), fix="fleetlink agent register --url <API URL> --token <registration token>"
        ) from None


@agent_app.command()
def heartbeat(
    state_dir: StateDirOption = None,
    loop: Annotated[
        bool, typer.Option("--loop", help="Keep sending at the server's interval until Ctrl-C")
    ] = False,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Send this many heartbeats, then stop")
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option("--interval", min=0.0, help="Seconds between heartbeats (default: the server's)"),
    ] = None,
    status: Annotated[str, typer.Option("--status", help="What the agent reports of itself")] = "ok",
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's answer as JSON")] = False,
) -> None:
    """Send a heartbeat (or several with --loop / --count) and print the server's answer.

    In a loop, unreachable servers, 429 and 5xx answers are reported and retried at the next beat;
    any other error (e.g. a revoked agent) stops with exit status 1.
    """
    store = IdentityStore(state_dir)
    with reporting_errors():
        identity, client = _load_agent(store)
    context = _agent_context(identity, state_dir)
    repeat = loop or (count or 1) > 1
    wait_s = float(DEFAULT_INTERVAL_S)
    sent = 0
    try:
        with client:
            while True:
                try:
                    ack = client.heartbeat(identity.agent_id, status=status, metrics=host_metrics())
                    _print_ack(ack, as_json)
                    wait_s = float(ack.heartbeat_interval_s)
                except FleetlinkApiError as error:
                    if not repeat or not (error.status >= 500 or error.status == 429):
                        raise api_failure(error, context) from None
                    err().print(f"[yellow]heartbeat failed: {escape(str(error))}; retrying[/yellow]")
                except FleetlinkConnectionError as error:
                    if not repeat:
                        raise connection_failure(error, context) from None
                    err().print(f"[yellow]heartbeat failed: {escape(str(error))}; retrying[/yellow]")
                except FleetlinkClientError as error:
                    if not repeat:
                        raise fail(str(error)) from None
                    err().print(f"[yellow]heartbeat failed: {escape(str(error))}; retrying[/yellow]")
                sent += 1
                if not repeat or (count is not None and sent >= count):
                    return
                time.sleep(interval if interval is not None else wait_s)
    except KeyboardInterrupt:
        err().print(f"stopped after {sent} heartbeats")


@contextmanager
def _only_runner(state_dir: Path) -> Iterator[None]:
    try:
        with only_runner(state_dir):
            yield
    except AlreadyRunning as exc:
        raise fail(str(exc)) from None


def _clock_time() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S")


def _print_event(event: RunnerEvent) -> None:
    """One line per execution started, finished, stopped, or refused by the server."""
    record = event.record
    who = f"{record.execution_id} (attempt {record.attempt})"
    if event.kind == "started":
        what = record.command if record.type == "shell" else f"{record.type} {json.dumps(record.input)}"
        line = f"started  {who}: {escape(first_line(what or '', 80))}"
    elif event.kind == "finished":
        status = record.result_status.value if record.result_status else "?"
        cancelled = record.error == CANCELLED
        parts = [styled("cancelled" if cancelled else status, EXECUTION_STYLE)]
        if record.exit_code is not None:
            parts.append(f"exit {record.exit_code}")
        if record.started_at is not None and record.finished_at is not None:
            parts.append(f"in {duration(record.finished_at - record.started_at)}")
        if record.error and not cancelled:
            parts.append(escape(first_line(record.error, 120)))
        line = f"finished {who}: " + ", ".join(parts)
    elif event.kind == "stopping":
        line = f"stopping {who}: {escape(event.detail)}"
    elif event.detail == "cancelled" and record.error == CANCELLED:
        return  # the finished line said so
    elif event.detail.startswith("refused") or event.detail not in ("succeeded", "failed", "timed_out"):
        line = f"reported {who}: the server recorded {escape(event.detail)}"
    else:
        return
    out().print(f"[dim]{_clock_time()}[/dim] {line}")


def _print_tunnel_event(event: EventRecord) -> None:
    """One line per tunnel event the daemon records: started, stopped, health changes, errors."""
    style = {"error": "red", "warn": "yellow"}.get(event.level.value, "")
    what = (
        f"tunnel {event.tunnel_id or '-'} {event.event_type.value}: {escape(first_line(event.message, 120))}"
    )
    out().print(f"[dim]{_clock_time()}[/dim] " + (f"[{style}]{what}[/{style}]" if style else what))


class _ConsoleLogHandler(logging.Handler):
    """The runner's warnings as plain lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        style = "red" if record.levelno >= logging.ERROR else "yellow"
        err().print(f"[{style}]{escape(self.format(record))}[/{style}]")


def _agent_logging() -> None:
    logger = logging.getLogger("fleetlink.agent")
    if not any(isinstance(h, _ConsoleLogHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleLogHandler(logging.WARNING))
    logger.propagate = False


@agent_app.command("run")
def run_agent(
    state_dir: StateDirOption = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=MAX_CONCURRENCY, help="Executions run at once")
    ] = 4,
    stop_grace: Annotated[
        float,
        typer.Option("--stop-grace", min=0.0, help="On Ctrl-C, seconds running tasks get to finish"),
    ] = 30.0,
    first_heartbeat_jitter: Annotated[
        float,
        typer.Option(
            "--first-heartbeat-jitter",
            envvar="FLEETLINK_FIRST_HEARTBEAT_JITTER_S",
            min=0.0,
            help="Wait a random 0 to this many seconds before the first heartbeat (spreads fleet restarts)",
        ),
    ] = DEFAULT_FIRST_BEAT_JITTER_S,
    handler: Annotated[
        list[str] | None,
        typer.Option(
            "--handler",
            metavar="TYPE=MODULE:FUNCTION",
            help="Run tasks of TYPE with this function (module:function or file.py:function); repeat "
            "for more. Installed packages may declare handlers as fleetlink.task_handlers entry points",
        ),
    ] = None,
) -> None:
    """Run the agent daemon (heartbeat, tasks, tunnels, record sync) until Ctrl-C or SIGTERM.

    It prints a line per execution.

    The first Ctrl-C stops claiming; running tasks get --stop-grace seconds, a second Ctrl-C stops them.

    Executions and tunnels are kept in agent.db in the state dir: a restart reports what a previous
    run left and brings the tunnels back.
    """
    identity_store = IdentityStore(state_dir)
    try:
        check_state_db(identity_store.path)
    except DamagedDatabase as damaged:
        raise fail(str(damaged), fix=damaged.fix) from None
    with reporting_errors():
        identity, client = _load_agent(identity_store)  # says how to register when this machine is not
    client.close()
    _agent_logging()
    registry = HandlerRegistry()
    add_handlers(registry, handler or [])
    registry.load_entry_points()
    options = AgentOptions(
        concurrency=concurrency,
        stop_grace_s=stop_grace,
        first_beat_jitter_s=first_heartbeat_jitter,
        on_event=_print_event,
        on_tunnel_event=_print_tunnel_event,
        registry=registry,
    )
    with (
        reporting_errors(_agent_context(identity, state_dir)),
        _only_runner(identity_store.path),
        build_agent(identity_store.path, options) as agent,
    ):

        def said(urgent: bool) -> None:
            if urgent:
                err().print("stopping running tasks now")
            else:
                err().print(
                    f"stopping: no new tasks; running ones get {stop_grace:g} s "
                    "(Ctrl-C again to stop them now)"
                )

        err().print(
            f"agent {agent.identity.agent_id} running tasks ({', '.join(registry.types())}; "
            f"{concurrency} at a time) and tunnels from {escape(str(agent.db_path))}, syncing records; "
            "Ctrl-C stops"
        )
        with agent.supervisor.signals(said):
            agent.run()
    err().print("agent stopped")


def _registered(state_dir: Path | None) -> tuple[IdentityStore, Identity]:
    """This machine's identity store and saved identity; a message naming the state dir if it has none."""
    store = IdentityStore(state_dir)
    with reporting_errors():
        identity = store.load_identity()
    if identity is None:
        raise fail(
            f"this machine is not registered (state dir {store.path})",
            fix="fleetlink agent register --url <API URL> --token <registration token>",
        )
    return store, identity


@agent_app.command()
def whoami(
    state_dir: StateDirOption = None, output: OutputOption = OutputFormat.TABLE, as_json: JsonOption = False
) -> None:
    """Show this machine's saved agent identity and its key's fingerprint (never the key itself)."""
    store, identity = _registered(state_dir)
    with reporting_errors():
        key = store.load_key()
    data = {
        "agent_id": identity.agent_id,
        "api_url": identity.api_url,
        "key_alg": identity.key_alg.value,
        "key_fingerprint": key_fingerprint(key) if key else None,
        "hardware_fingerprint": identity.fingerprint,
        "registered_at": identity.registered_at,
        "state_dir": str(store.path),
        "key_file": str(store.key_path),
    }
    if wants_json(output, as_json):
        typer.echo(json.dumps(data, indent=2))
        return
    rows = {
        "agent id": identity.agent_id,
        "api url": identity.api_url,
        "key": f"{identity.key_alg.value} {data['key_fingerprint'] or '(missing)'}",
        "hardware fingerprint": f"{identity.fingerprint} (this machine's, shared by its agents)",
        "registered": f"{when(identity.registered_at)} ({ago(identity.registered_at)})",
        "state dir": str(store.path),
        "key file": f"{store.key_path}" + ("" if store.key_path.exists() else " (missing)"),
    }
    print_details({field: escape(value) for field, value in rows.items()})


agent_app.command("tunnels")(local_tunnels)
agent_app.command("install-service")(install_service)


def _relay_rows(health: SyncHealth) -> dict[str, str]:
    age = health.oldest_pending_age_s
    return {
        "relay queue": f"{health.queue_size} records, {health.bytes_pending} bytes",
        "relay oldest pending": "-" if age is None else duration(int(age * 1000)),
        "relay last success": ago(health.last_success_at),
        "relay last error": escape(first_line(last_error_text(health), 160)),
        "relay failures in a row": str(health.consecutive_failures),
        "relay dead letters": str(health.dead_letters),
    }


@agent_app.command()
def status(
    state_dir: StateDirOption = None, output: OutputOption = OutputFormat.TABLE, as_json: JsonOption = False
) -> None:
    """This agent's identity and how far its record sync is behind (from agent.db; no network)."""
    store, identity = _registered(state_dir)
    health = None
    if db_path(store.path).exists():
        with RecordStore.in_state_dir(store.path) as records:
            health = records.health()
    disk_problem = StateDirHealth(store.path).probe()
    if wants_json(output, as_json):
        body: dict[str, object] = {"agent_id": identity.agent_id, "api_url": identity.api_url}
        body |= {"state_dir": str(store.path), "state_dir_writable": disk_problem is None}
        body |= {"state_dir_problem": disk_problem}
        typer.echo(json.dumps(body | {"relay": health.as_dict() if health else None}, indent=2))
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    state = str(store.path) if disk_problem is None else f"{store.path} (NOT writable: {disk_problem})"
    rows = {"agent id": identity.agent_id, "api url": identity.api_url, "state dir": state}
    rows |= _relay_rows(health) if health else {"relay": "no records yet"}
    for field, value in rows.items():
        table.add_row(field, escape(value))
    out().print(table)


agent_app.command("rotate-key")(rotate_key)

# the installed agent's service and uninstall (fleetlink.cli.agent_lifecycle) add their commands here
from fleetlink.cli import agent_lifecycle as _lifecycle  # noqa: E402, F401
