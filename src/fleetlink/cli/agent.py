"""``fleetlink agent``: this machine as an agent (register, heartbeat, run the daemon, whoami).

Secrets (the private key) are never printed; API errors print the problem's title and detail in red
and exit 1.
"""

from __future__ import annotations

import datetime
import fcntl
import functools
import getpass
import json
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fleetlink.agent.client import (
    FleetlinkApiError,
    FleetlinkClient,
    FleetlinkClientError,
    FleetlinkConnectionError,
    api_root,
)
from fleetlink.agent.daemon import (
    DEFAULT_FIRST_BEAT_JITTER_S,
    DEFAULT_INTERVAL_S,
    HeartbeatService,
    Supervisor,
)
from fleetlink.agent.hardware import collect_hardware, fingerprint
from fleetlink.agent.identity import DEFAULT_STATE_DIR, Identity, IdentityStore, key_alg_of
from fleetlink.agent.relay.client import RelayClient
from fleetlink.agent.relay.service import RelayService
from fleetlink.agent.relay.store import DB_FILE, RecordStore, SyncHealth
from fleetlink.agent.sequence import HeartbeatSequence
from fleetlink.agent.tasks.runner import (
    CANCELLED,
    MAX_CONCURRENCY,
    HandlerRegistry,
    RunnerEvent,
    TasksService,
)
from fleetlink.agent.tasks.store import AgentStore
from fleetlink.agent.tunnels.service import TunnelsService
from fleetlink.agent.tunnels.store import DB_FILE_NAME, TunnelStore
from fleetlink.auth.sealing import (
    ENCRYPTION_KEY_FILE,
    EncryptionPrivateKey,
    encryption_public_key_pem,
    load_encryption_key,
    load_or_create_encryption_key,
    open_sealed,
)
from fleetlink.cli.render import (
    EXECUTION_STYLE,
    HEALTH_STYLE,
    CallContext,
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
    reporting_errors,
    styled,
    when,
)
from fleetlink.contract.agents import HeartbeatAck
from fleetlink.core.entities import KeyAlg

agent_app = typer.Typer(
    help="This machine as a fleetlink agent: register, heartbeat, run, install-service, whoami.",
    no_args_is_help=True,
)


StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar="FLEETLINK_STATE_DIR",
        help="Where the agent's key and identity live (default: ~/.fleetlink/agent)",
        show_default=False,
    ),
]
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
        str | None, typer.Option(help="Agent name (default: from the token and hostname)")
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
        with FleetlinkClient(api_url) as client:
            result = client.register(
                token,
                hardware,
                key,
                key_alg,
                tags=tags,
                name=name,
                fingerprint=agent_fingerprint,
                agent_id=known_as,
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
    err().print(f"[green]{how}[/green] as {result.agent_id}; identity saved in {escape(str(store.path))}")
    typer.echo(result.agent_id)


def _metrics() -> dict[str, float]:
    try:
        load1, load5, load15 = os.getloadavg()
    except (OSError, AttributeError):
        return {}
    return {"load1": round(load1, 3), "load5": round(load5, 3), "load15": round(load15, 3)}


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
    identity = store.load_identity()
    key = store.load_key()
    if identity is None or key is None:
        raise fail(
            f"this machine is not registered (state dir {store.path})",
            fix="fleetlink agent register --url <API URL> --token <registration token>",
        )
    if key_alg_of(key) is not identity.key_alg:
        raise fail(f"the key in {store.key_path} does not match identity.json's {identity.key_alg.value}")
    client = FleetlinkClient(
        identity.api_url,
        private_key=key,
        key_alg=identity.key_alg,
        agent_id=identity.agent_id,
        heartbeat_sequence=HeartbeatSequence.in_state_dir(store.path).next,
    )
    return identity, client


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
                    ack = client.heartbeat(identity.agent_id, status=status, metrics=_metrics())
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


LOCK_FILE = "agent.lock"


@contextmanager
def _only_runner(state_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the state dir for as long as this agent runs tasks from it."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(state_dir / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise fail(f"another `fleetlink agent run` is using {state_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def _secret_opener(state_dir: Path) -> Callable[..., bytes] | None:
    """Opens secrets sealed to this agent with its encryption key (None: it registered none)."""
    path = state_dir / ENCRYPTION_KEY_FILE
    if not path.exists():
        return None
    key: EncryptionPrivateKey = load_encryption_key(path)

    def open_secret(sealed: str, *, context: bytes) -> bytes:
        return open_sealed(key, sealed, context=context)

    return open_secret


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
) -> None:
    """Run the agent daemon (heartbeat, tasks, tunnels, record sync) until Ctrl-C or SIGTERM.

    It prints a line per execution.

    The first Ctrl-C stops claiming; running tasks get --stop-grace seconds, a second Ctrl-C stops them.

    Executions and tunnels are kept in agent.db in the state dir: a restart reports what a previous
    run left and brings the tunnels back.
    """
    identity_store = IdentityStore(state_dir)
    with reporting_errors():
        identity, client = _load_agent(identity_store)
    _agent_logging()
    registry = HandlerRegistry()
    registry.load_entry_points()
    context = _agent_context(identity, state_dir)
    with reporting_errors(context), client, _only_runner(identity_store.path):
        store = AgentStore.in_state_dir(identity_store.path)
        records = RecordStore.in_state_dir(identity_store.path)
        relay_client = RelayClient.from_state_dir(identity_store.path)
        relay = RelayService(records, relay_client)
        tasks = TasksService(
            client,
            store,
            registry,
            identity.agent_id,
            concurrency,
            listener=_print_event,
            stop_grace_s=stop_grace,
        )
        heartbeat = HeartbeatService(
            client,
            identity.agent_id,
            running_executions=tasks.running_ids,
            host_metrics=_metrics,
            first_beat_jitter_s=first_heartbeat_jitter,
        )
        tunnels = TunnelsService(
            agent_id=identity.agent_id,
            api=client,
            state_dir=identity_store.path,
            open_secret=_secret_opener(identity_store.path),
        )
        daemon = Supervisor(heartbeat, [tasks, tunnels, relay])
        tasks.on_started = functools.partial(daemon.wake, heartbeat.name)

        def said(urgent: bool) -> None:
            if urgent:
                err().print("stopping running tasks now")
            else:
                err().print(
                    f"stopping: no new tasks; running ones get {stop_grace:g} s "
                    "(Ctrl-C again to stop them now)"
                )

        err().print(
            f"agent {identity.agent_id} running tasks ({', '.join(registry.types())}; "
            f"{concurrency} at a time) and tunnels from {escape(str(store.path))}, syncing records; "
            "Ctrl-C stops"
        )
        try:
            with daemon.signals(said):
                daemon.run()
        finally:
            store.close()
            relay_client.close()
            records.close()
    err().print("agent stopped")


@agent_app.command()
def whoami(state_dir: StateDirOption = None) -> None:
    """Show this machine's saved agent identity (never the key itself)."""
    store = IdentityStore(state_dir)
    with reporting_errors():
        identity = store.load_identity()
        if identity is None:
            raise fail(f"this machine is not registered (state dir {store.path})")
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = {
        "agent id": identity.agent_id,
        "api url": identity.api_url,
        "key alg": identity.key_alg.value,
        "fingerprint": identity.fingerprint,
        "registered": f"{when(identity.registered_at)} ({ago(identity.registered_at)})",
        "state dir": str(store.path),
        "key file": f"{store.key_path}" + ("" if store.key_path.exists() else " (missing)"),
    }
    for field, value in rows.items():
        table.add_row(field, escape(value))
    out().print(table)


@agent_app.command("tunnels")
def local_tunnels(
    state_dir: StateDirOption = None,
    events: Annotated[int, typer.Option("--events", min=0, help="Also show this many recent events")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """This machine's tunnels as the agent last knew them (from agent.db; works offline)."""
    path = IdentityStore(state_dir).path / DB_FILE_NAME
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


# --- service -------------------------------------------------------------------------------------

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")


def _fleetlink_command() -> str:
    """How systemd should start this fleetlink: the installed script, else this Python's module."""
    script = Path(sys.argv[0])
    if script.name == "fleetlink" and script.exists():
        return shlex.quote(str(script.resolve()))
    return f"{shlex.quote(sys.executable)} -m fleetlink.cli"


def unit_name(state_dir: Path) -> str:
    """``fleetlink-agent`` for the default state dir, ``fleetlink-agent-<dir name>`` for another."""
    if state_dir == IdentityStore(DEFAULT_STATE_DIR).path:
        return "fleetlink-agent"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", state_dir.name).strip("-.") or "agent"
    return f"fleetlink-agent-{slug}"


def systemd_unit(
    *,
    command: str,
    state_dir: Path,
    agent_id: str | None,
    system: bool,
    run_as: str | None,
    concurrency: int,
    stop_grace_s: float,
) -> str:
    """A systemd service running ``fleetlink agent run`` for the agent of ``state_dir``."""
    who = f"agent {agent_id}" if agent_id else "agent"
    lines = [
        "[Unit]",
        f"Description=fleetlink {who} (state dir {state_dir})",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={command} agent run --state-dir {shlex.quote(str(state_dir))} "
        f"--concurrency {concurrency} --stop-grace {stop_grace_s:g}",
        "Environment=PYTHONUNBUFFERED=1 NO_COLOR=1",
        # an exit is an error retrying inside could not fix (e.g. revoked): retry slowly, then give up
        "Restart=on-failure",
        "RestartSec=30",
        # SIGTERM to the daemon only: it stops claiming and gives running tasks --stop-grace to end
        "KillMode=mixed",
        f"TimeoutStopSec={int(stop_grace_s) + 30}",
    ]
    if system and run_as:
        lines.append(f"User={run_as}")
    lines += ["", "[Install]", f"WantedBy={'multi-user.target' if system else 'default.target'}", ""]
    return "\n".join(lines)


@agent_app.command("install-service")
def install_service(
    state_dir: StateDirOption = None,
    system: Annotated[
        bool,
        typer.Option(
            "--system/--user",
            help="A system unit in /etc/systemd/system (needs root), or a user unit in "
            "~/.config/systemd/user (default)",
        ),
    ] = False,
    print_only: Annotated[bool, typer.Option("--print", help="Print the unit; install nothing")] = False,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Unit name (default: fleetlink-agent, or fleetlink-agent-<dir> for another state dir)",
            show_default=False,
        ),
    ] = None,
    run_as: Annotated[
        str | None, typer.Option("--run-as", help="User of a system unit (default: you)", show_default=False)
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=MAX_CONCURRENCY, help="Executions run at once")
    ] = 4,
    stop_grace: Annotated[
        float, typer.Option("--stop-grace", min=0.0, help="On stop, seconds running tasks get to finish")
    ] = 30.0,
) -> None:
    """Write a systemd unit that runs `fleetlink agent run` for this state dir (one unit per agent).

    Two agents on one machine: register each in a state dir of its own, then install a unit per
    state dir (`--state-dir ~/.fleetlink/web`, `--state-dir ~/.fleetlink/db`).
    """
    identity_store = IdentityStore(state_dir)
    state_path = identity_store.path.resolve()
    with reporting_errors():
        identity = identity_store.load_identity()
    if identity is None:
        err().print(
            f"[yellow]warning: {escape(str(state_path))} holds no agent yet; register it before starting "
            f"the service: fleetlink agent register --token <token> --state-dir {escape(str(state_path))}"
            "[/yellow]"
        )
    unit = unit_name(state_path) if name is None else name.removesuffix(".service")
    text = systemd_unit(
        command=_fleetlink_command(),
        state_dir=state_path,
        agent_id=identity.agent_id if identity else None,
        system=system,
        run_as=run_as or (getpass.getuser() if system else None),
        concurrency=concurrency,
        stop_grace_s=stop_grace,
    )
    if print_only:
        typer.echo(text, nl=False)
        return
    if system:
        directory = SYSTEM_UNIT_DIR
    else:
        config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        directory = Path(config_home) / "systemd" / "user"
    path = directory / f"{unit}.service"
    with reporting_errors():
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    systemctl = "systemctl" if system else "systemctl --user"
    err().print(f"[green]wrote[/green] {escape(str(path))}; start it now and at every boot with:")
    out().print(f"  {systemctl} daemon-reload && {systemctl} enable --now {unit}", markup=False)
    if not system:
        out().print(
            "  loginctl enable-linger $USER    # keep it running when you are logged out", markup=False
        )
    journal = "journalctl" if system else "journalctl --user"
    out().print(f"  {journal} -u {unit} -f              # its log", markup=False)


def _relay_rows(health: SyncHealth) -> dict[str, str]:
    age = health.oldest_pending_age_s
    return {
        "relay queue": f"{health.queue_size} records, {health.bytes_pending} bytes",
        "relay oldest pending": "-" if age is None else duration(int(age * 1000)),
        "relay last success": ago(health.last_success_at),
        "relay last error": escape(first_line(health.last_error or "-", 120)),
        "relay failures in a row": str(health.consecutive_failures),
        "relay dead letters": str(health.dead_letters),
    }


@agent_app.command()
def status(
    state_dir: StateDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """This agent's identity and how far its record sync is behind (from agent.db; no network)."""
    store = IdentityStore(state_dir)
    with reporting_errors():
        identity = store.load_identity()
        if identity is None:
            raise fail(f"this machine is not registered (state dir {store.path})")
    health = None
    if (store.path / DB_FILE).exists():
        with RecordStore.in_state_dir(store.path) as records:
            health = records.health()
    if as_json:
        body = {"agent_id": identity.agent_id, "api_url": identity.api_url, "state_dir": str(store.path)}
        out().print_json(json.dumps(body | {"relay": health.as_dict() if health else None}))
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = {"agent id": identity.agent_id, "api url": identity.api_url, "state dir": str(store.path)}
    rows |= _relay_rows(health) if health else {"relay": "no records yet"}
    for field, value in rows.items():
        table.add_row(field, escape(value))
    out().print(table)
