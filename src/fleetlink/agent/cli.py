"""Command lines: ``agent_app`` (this machine as an agent), ``agents_app``, ``tokens_app`` and
``tasks_app`` (operator).

``fleetlink.cli`` mounts them as ``fleetlink agent``, ``fleetlink agents``, ``fleetlink tokens`` and
``fleetlink tasks``.
API errors print the problem's title and detail in red and exit 1; secrets (private keys, operator
tokens) are never printed, and a registration token only once, when it is created.
"""

from __future__ import annotations

import datetime
import fcntl
import itertools
import json
import logging
import os
import shlex
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from fleetlink.agent.client import (
    ExecutionSummary,
    FleetlinkApiError,
    FleetlinkClient,
    FleetlinkClientError,
    HeartbeatAck,
    OperatorClient,
    TaskDetail,
    TaskSummary,
    api_root,
)
from fleetlink.agent.hardware import collect_hardware, fingerprint
from fleetlink.agent.identity import Identity, IdentityError, IdentityStore, key_alg_of
from fleetlink.agent.runner import MAX_CONCURRENCY, HandlerRegistry, RunnerEvent, TaskRunner
from fleetlink.agent.sigv4 import MissingCredentials, SigV4Auth
from fleetlink.agent.store import AgentStore, StoreError
from fleetlink.api.schemas import AgentSummary
from fleetlink.core.entities import KeyAlg
from fleetlink.core.errors import InvalidInput

agent_app = typer.Typer(
    help="This machine as a fleetlink agent: register, heartbeat, whoami.", no_args_is_help=True
)
agents_app = typer.Typer(help="Operator: list, inspect, revoke and tag agents.", no_args_is_help=True)
tokens_app = typer.Typer(help="Operator: registration tokens.", no_args_is_help=True)
tasks_app = typer.Typer(
    help="Operator: run commands on agents, follow them, list and cancel tasks.", no_args_is_help=True
)

#: Width of output that is not a terminal (piped or captured) when COLUMNS is unset: rows stay whole.
PIPED_WIDTH = 200


def _console(*, stderr: bool = False) -> Console:
    """A console on the current streams and environment (COLUMNS, NO_COLOR), made per use."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPED_WIDTH
    return console


def out() -> Console:
    return _console()


def err() -> Console:
    return _console(stderr=True)


DEFAULT_INTERVAL_S = 60


class StatusFilter(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    ONLINE = "online"
    CONNECTION_LOST = "connection_lost"
    NEVER_SEEN = "never_seen"


UrlOption = Annotated[
    str, typer.Option("--url", envvar="FLEETLINK_URL", help="API base URL, e.g. http://127.0.0.1:8080")
]
OperatorTokenOption = Annotated[
    str | None,
    typer.Option(
        "--operator-token",
        envvar="FLEETLINK_OPERATOR_TOKEN",
        help="Operator bearer token (dev stack); without one, requests are SigV4-signed (IAM)",
        show_default=False,
    ),
]
StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar="FLEETLINK_STATE_DIR",
        help="Where the agent's key and identity live (default: ~/.fleetlink/agent)",
        show_default=False,
    ),
]
TagOption = Annotated[list[str] | None, typer.Option("--tag", help="key=value; repeat for more tags")]


def _fail(message: str, detail: str = "") -> typer.Exit:
    text = f"[bold red]Error:[/bold red] [red]{escape(message)}[/red]"
    if detail:
        text += f"\n{escape(detail)}"
    err().print(text)
    return typer.Exit(1)


def _api_failure(error: FleetlinkApiError) -> typer.Exit:
    lines = [error.detail] if error.detail else []
    for item in error.errors:
        loc = ".".join(str(part) for part in item.get("loc", []))
        lines.append(f"  {loc}: {item.get('msg', 'invalid')}")
    return _fail(f"{error.title} ({error.status})", "\n".join(lines))


@contextmanager
def _reporting_errors() -> Iterator[None]:
    """Turn client and local-state failures into a red message and exit status 1 (no traceback)."""
    try:
        yield
    except FleetlinkApiError as error:
        raise _api_failure(error) from None
    except (
        FleetlinkClientError,
        IdentityError,
        InvalidInput,
        StoreError,
        MissingCredentials,
        OSError,
    ) as error:
        raise _fail(str(error)) from None


def parse_tags(pairs: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` as a dict; a pair without ``=`` or with an empty key is a usage error."""
    tags: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="tag")
        tags[key.strip()] = value.strip()
    return tags


def _format_tags(tags: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(tags.items()))


def _now_ms() -> int:
    return int(time.time() * 1000)


def ago(at_ms: int | None, now_ms: int | None = None) -> str:
    """``42s ago``, ``5m ago``, ``3h ago``, ``2d ago``; ``never`` for None."""
    if at_ms is None:
        return "never"
    seconds = max(0, ((_now_ms() if now_ms is None else now_ms) - at_ms) // 1000)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _when(at_ms: int | None) -> str:
    if at_ms is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


_LIVENESS_STYLE = {"online": "green", "connection_lost": "yellow", "never_seen": "dim"}
_STATE_STYLE = {"active": "green", "revoked": "red"}


def _styled(value: str, styles: Mapping[str, str]) -> str:
    style = styles.get(value)
    return f"[{style}]{escape(value)}[/{style}]" if style else escape(value)


def _operator(url: str, operator_token: str | None) -> OperatorClient:
    """Bearer token on the dev stack; without one, AWS SigV4 (IAM) for a deployed API."""
    if operator_token:
        return OperatorClient(url, operator_token)
    return OperatorClient(url, auth=SigV4Auth())


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
    with _reporting_errors():
        previous = store.load_identity()
        api_url = url or (previous.api_url if previous else None)
        if not api_url:
            raise _fail("no API URL: pass --url or set FLEETLINK_URL")
        had_key = store.load_key() is not None
        key, key_alg = store.load_or_create_key(alg)
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
        f"heartbeat ok at {_when(ack.server_time)}: next in {ack.heartbeat_interval_s}s, "
        f"{ack.pending_executions} pending executions, tunnels version {ack.tunnels_version}"
    )


def _load_agent(store: IdentityStore) -> tuple[Identity, FleetlinkClient]:
    identity = store.load_identity()
    key = store.load_key()
    if identity is None or key is None:
        raise _fail(
            f"this machine is not registered (state dir {store.path}): run `fleetlink agent register`"
        )
    if key_alg_of(key) is not identity.key_alg:
        raise _fail(f"the key in {store.key_path} does not match identity.json's {identity.key_alg.value}")
    client = FleetlinkClient(
        identity.api_url, private_key=key, key_alg=identity.key_alg, agent_id=identity.agent_id
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
    with _reporting_errors():
        identity, client = _load_agent(store)
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
                        raise _api_failure(error) from None
                    err().print(f"[yellow]heartbeat failed: {escape(str(error))}; retrying[/yellow]")
                except FleetlinkClientError as error:
                    if not repeat:
                        raise _fail(str(error)) from None
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
            raise _fail(f"another `fleetlink agent run` is using {state_dir}") from None
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
        line = f"started  {who}: {escape(_first_line(what or '', 80))}"
    elif event.kind == "finished":
        status = record.result_status.value if record.result_status else "?"
        parts = [_styled(status, _EXECUTION_STYLE)]
        if record.exit_code is not None:
            parts.append(f"exit {record.exit_code}")
        if record.started_at is not None and record.finished_at is not None:
            parts.append(f"in {_duration(record.finished_at - record.started_at)}")
        if record.error:
            parts.append(escape(_first_line(record.error, 120)))
        line = f"finished {who}: " + ", ".join(parts)
    elif event.kind == "stopping":
        line = f"stopping {who}: {escape(event.detail)}"
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
) -> None:
    """Run tasks for this agent until Ctrl-C or SIGTERM, printing a line per execution.

    The first Ctrl-C stops claiming; running tasks get --stop-grace seconds, a second Ctrl-C stops them.

    Executions are kept in agent.db in the state dir: a restart reports what a previous run left.
    """
    identity_store = IdentityStore(state_dir)
    with _reporting_errors():
        identity, client = _load_agent(identity_store)
    _agent_logging()
    registry = HandlerRegistry()
    registry.load_entry_points()
    with _reporting_errors(), client, _only_runner(identity_store.path):
        store = AgentStore.in_state_dir(identity_store.path)
        runner = TaskRunner(
            client,
            store,
            registry,
            identity.agent_id,
            concurrency,
            listener=_print_event,
            metrics=_metrics,
            stop_grace_s=stop_grace,
        )

        def request_stop(signum: int, frame: FrameType | None) -> None:
            urgent = runner.stopping
            runner.request_stop(urgent=urgent)
            if urgent:
                err().print("stopping running tasks now")
            else:
                err().print(
                    f"stopping: no new tasks; running ones get {stop_grace:g} s "
                    "(Ctrl-C again to stop them now)"
                )

        in_main = threading.current_thread() is threading.main_thread()
        previous = (
            {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
            if in_main
            else {}
        )
        err().print(
            f"agent {identity.agent_id} running tasks ({', '.join(registry.types())}; "
            f"{concurrency} at a time) from {escape(str(store.path))}; Ctrl-C stops"
        )
        try:
            runner.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            store.close()
    err().print("agent stopped")


@agent_app.command()
def whoami(state_dir: StateDirOption = None) -> None:
    """Show this machine's saved agent identity (never the key itself)."""
    store = IdentityStore(state_dir)
    with _reporting_errors():
        identity = store.load_identity()
        if identity is None:
            raise _fail(f"this machine is not registered (state dir {store.path})")
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = {
        "agent id": identity.agent_id,
        "api url": identity.api_url,
        "key alg": identity.key_alg.value,
        "fingerprint": identity.fingerprint,
        "registered": f"{_when(identity.registered_at)} ({ago(identity.registered_at)})",
        "state dir": str(store.path),
        "key file": f"{store.key_path}" + ("" if store.key_path.exists() else " (missing)"),
    }
    for field, value in rows.items():
        table.add_row(field, escape(value))
    out().print(table)


# --- agents (operator) ---------------------------------------------------------------------------


def _tag_filter(value: str | None) -> str | None:
    if value is not None and (":" not in value or not value.partition(":")[0]):
        raise typer.BadParameter(f"{value!r} is not key:value", param_hint="--tag")
    return value


@agents_app.command("ls")
def list_agents(
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
    status: Annotated[StatusFilter | None, typer.Option("--status", help="Only agents in this state")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only agents with this tag, as key:value")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many agents")] = 50,
) -> None:
    """List agents with their state, liveness, last heartbeat and tags."""
    tag = _tag_filter(tag)
    with _reporting_errors(), _operator(url, operator_token) as client:
        agents = list(
            itertools.islice(client.iter_agents(status=status, tag=tag, page_size=min(limit, 100)), limit)
        )
    if not agents:
        err().print("no agents")
        return
    now = _now_ms()
    table = Table()
    table.add_column("ID", no_wrap=True, min_width=max(len(a.agent_id) for a in agents))
    table.add_column("NAME", overflow="fold")
    table.add_column("STATE", no_wrap=True)
    table.add_column("LIVENESS", no_wrap=True)
    table.add_column("LAST SEEN", no_wrap=True)
    table.add_column("TAGS", overflow="fold")
    for agent in agents:
        table.add_row(
            agent.agent_id,
            escape(agent.name),
            _styled(agent.state.value, _STATE_STYLE),
            _styled(agent.liveness.value, _LIVENESS_STYLE),
            ago(agent.last_seen_at, now),
            escape(_format_tags(agent.tags)),
        )
    out().print(table)


def _summary_rows(agent: AgentSummary) -> dict[str, str]:
    metrics = ", ".join(f"{name}={value:g}" for name, value in sorted(agent.metrics.items()))
    rows = {
        "id": agent.agent_id,
        "name": agent.name,
        "state": agent.state.value,
        "liveness": agent.liveness.value,
        "last seen": ago(agent.last_seen_at) if agent.last_seen_at else "never",
        "reported status": agent.reported_status or "-",
        "metrics": metrics or "-",
        "tags": _format_tags(agent.tags) or "-",
        "capabilities": ", ".join(agent.capabilities) or "-",
        "agent version": agent.agent_version or "-",
        "key alg": agent.key_alg.value,
        "fingerprint": agent.fingerprint,
        "registered": _when(agent.registered_at),
        "updated": _when(agent.updated_at),
    }
    if agent.revoked_at is not None:
        rows["revoked"] = _when(agent.revoked_at)
    hardware: dict[str, Any] = agent.hardware.model_dump()
    rows |= {f"hardware.{name}": str(value) for name, value in hardware.items() if str(value)}
    return rows


@agents_app.command("show")
def show_agent(
    agent_id: Annotated[str, typer.Argument(help="Agent id (agt_...)")],
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Show one agent and its registration history with similarity scores."""
    with _reporting_errors(), _operator(url, operator_token) as client:
        agent = client.get_agent(agent_id)
    details = Table(show_header=False, box=None)
    details.add_column(style="bold", no_wrap=True)
    details.add_column(overflow="fold")
    styles = {"state": _STATE_STYLE, "liveness": _LIVENESS_STYLE}
    for field, value in _summary_rows(agent).items():
        details.add_row(field, _styled(value, styles[field]) if field in styles else escape(value))
    out().print(details)
    history = Table(title="Registration history (newest first)", title_justify="left")
    for column in ("WHEN", "EVENT", "OK", "SIMILARITY", "KEY CHANGED", "TOKEN", "REASON"):
        history.add_column(column, overflow="fold")
    for event in agent.registration_history:
        history.add_row(
            _when(event.at),
            event.event.value,
            "[green]yes[/green]" if event.success else "[red]no[/red]",
            "-" if event.similarity_score is None else str(event.similarity_score),
            "yes" if event.key_changed else "no",
            event.token_id or "-",
            escape(event.reason or ""),
        )
    out().print(history)


@agents_app.command("revoke")
def revoke_agent(
    agent_id: Annotated[str, typer.Argument(help="Agent id (agt_...)")],
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Revoke an agent: its signed requests are refused from now on (idempotent)."""
    with _reporting_errors(), _operator(url, operator_token) as client:
        agent = client.revoke(agent_id)
    out().print(f"{agent.agent_id} {_styled(agent.state.value, _STATE_STYLE)} at {_when(agent.revoked_at)}")


@agents_app.command("tags")
def replace_agent_tags(
    agent_id: Annotated[str, typer.Argument(help="Agent id (agt_...)")],
    url: UrlOption,
    pairs: Annotated[list[str] | None, typer.Argument(help="key=value pairs: the agent's new tags")] = None,
    operator_token: OperatorTokenOption = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove all tags (when no pairs are given)")] = False,
) -> None:
    """Replace an agent's tags with the given key=value pairs."""
    tags = parse_tags(pairs)
    if not tags and not clear:
        raise typer.BadParameter("give key=value pairs, or --clear to remove all tags", param_hint="pairs")
    with _reporting_errors(), _operator(url, operator_token) as client:
        agent = client.replace_tags(agent_id, tags)
    out().print(f"{agent.agent_id} tags: {escape(_format_tags(agent.tags)) or '(none)'}")


# --- tokens (operator) ---------------------------------------------------------------------------


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
    with _reporting_errors(), _operator(url, operator_token) as client:
        created = client.create_token(ttl_seconds=ttl, max_uses=max_uses, tags=tags, name_prefix=name_prefix)
    err().print(
        f"token {created.token_id}: {created.max_uses} use(s), expires {_when(created.expires_at)}"
        + (f", tags {escape(_format_tags(created.tags))}" if created.tags else "")
        + " [dim](shown once: keep it now)[/dim]"
    )
    typer.echo(created.token)


# --- tasks (operator) ----------------------------------------------------------------------------

_EXECUTION_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "yellow",
    "expired": "yellow",
    "queued": "dim",
    "leased": "cyan",
    "running": "cyan",
}
_TASK_STATE_STYLE = {"active": "cyan", "finished": "green", "cancelled": "yellow"}
#: The order counts are listed in.
_EXECUTION_ORDER = ("queued", "leased", "running", "succeeded", "failed", "timed_out", "cancelled", "expired")


class TaskStateFilter(StrEnum):
    ACTIVE = "active"
    FINISHED = "finished"
    CANCELLED = "cancelled"


def _first_line(text: str, width: int = 60) -> str:
    line = next((part for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = max(0, ms) / 1000
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def parse_targets(targets: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """``tag:KEY=VALUE`` and ``agent:AGENT_ID`` (or a bare ``agt_...``) as (agent ids, tags)."""
    agent_ids: list[str] = []
    tags: dict[str, str] = {}
    for target in targets or []:
        kind, sep, rest = target.partition(":")
        if kind == "tag" and sep:
            key, eq, value = rest.partition("=")
            if not eq or not key.strip():
                raise typer.BadParameter(f"{target!r}: a tag target is tag:KEY=VALUE", param_hint="--target")
            tags[key.strip()] = value.strip()
        elif kind == "agent" and sep and rest.strip():
            agent_ids.append(rest.strip())
        elif not sep and target.startswith("agt_"):
            agent_ids.append(target)
        else:
            raise typer.BadParameter(
                f"{target!r} is neither tag:KEY=VALUE nor agent:AGENT_ID", param_hint="--target"
            )
    if not agent_ids and not tags:
        raise typer.BadParameter("name at least one target", param_hint="--target")
    return agent_ids, tags


def shell_command(words: list[str]) -> str:
    """The command line to run: one word is taken as shell text as is; several are quoted and joined."""
    return words[0] if len(words) == 1 else shlex.join(words)


def _counts(counts: Mapping[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda kv: (_rank(kv[0]), kv[0]))
    return ", ".join(f"{n} {_styled(status, _EXECUTION_STYLE)}" for status, n in ordered if n)


def _rank(status: str) -> int:
    return _EXECUTION_ORDER.index(status) if status in _EXECUTION_ORDER else len(_EXECUTION_ORDER)


def _what(task: TaskSummary) -> str:
    if task.command is not None:
        return task.command
    return f"{task.type} {json.dumps(task.input, separators=(',', ':'))}" if task.input else task.type


def _execution_duration(execution: ExecutionSummary, now_ms: int) -> str:
    if execution.duration_ms is not None:
        return _duration(execution.duration_ms)
    if execution.started_at is not None and execution.finished_at is None:
        return _duration(now_ms - execution.started_at) + "…"
    return "-"


def _executions_table(task: TaskDetail) -> Table:
    now = _now_ms()
    table = Table(
        title=f"{task.task_id} {escape(_first_line(_what(task), 70))}: "
        f"{_styled(task.state, _TASK_STATE_STYLE)}",
        title_justify="left",
    )
    table.add_column("AGENT", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("ATTEMPT", justify="right", no_wrap=True)
    table.add_column("EXIT", justify="right", no_wrap=True)
    table.add_column("DURATION", justify="right", no_wrap=True)
    table.add_column("OUTPUT", overflow="ellipsis", no_wrap=True)
    for execution in sorted(task.executions, key=lambda e: e.agent_id):
        shown = _first_line(execution.output or "")
        if not shown and execution.error:
            shown = f"error: {_first_line(execution.error)}"
        table.add_row(
            execution.agent_id,
            _styled(execution.status, _EXECUTION_STYLE),
            str(execution.attempt),
            "-" if execution.exit_code is None else str(execution.exit_code),
            _execution_duration(execution, now),
            escape(shown),
        )
    return table


def _progress(task: TaskDetail) -> Group:
    return Group(_executions_table(task), _counts(task.counts) or "[dim]no executions[/dim]")


def _print_outputs(task: TaskDetail) -> None:
    """Each agent's output in full (as kept by the server), under a rule naming the agent and outcome."""
    console = out()
    for execution in sorted(task.executions, key=lambda e: e.agent_id):
        if not (execution.output or execution.error):
            continue
        outcome = execution.status + ("" if execution.exit_code is None else f", exit {execution.exit_code}")
        console.rule(
            f"{execution.agent_id} [{_EXECUTION_STYLE.get(execution.status, 'default')}]{escape(outcome)}[/]",
            align="left",
        )
        if execution.output:
            console.out(execution.output.rstrip("\n"), highlight=False)
        if execution.output_truncated:
            total = f" of {execution.output_bytes} bytes" if execution.output_bytes is not None else ""
            console.print(f"[dim](output truncated: the start{total} is kept)[/dim]")
        if execution.error:
            console.print(f"[red]error:[/red] {escape(execution.error)}")


def _all_succeeded(task: TaskDetail) -> bool:
    return bool(task.executions) and all(e.status == "succeeded" for e in task.executions)


def _follow(client: OperatorClient, task_id: str, poll_s: float) -> TaskDetail:
    """Show a live per-agent table until the task is finished or cancelled; return its last state."""
    task = client.get_task(task_id)
    console = out()
    if not console.is_terminal:  # piped: no redrawing, just the final table
        while not task.done:
            time.sleep(poll_s)
            task = client.get_task(task_id)
        console.print(_progress(task))
        return task
    with Live(_progress(task), console=console, auto_refresh=False) as live:
        while not task.done:
            time.sleep(poll_s)
            task = client.get_task(task_id)
            live.update(_progress(task), refresh=True)
    return task


@tasks_app.command(
    "run", context_settings={"allow_interspersed_args": False, "help_option_names": ["--help", "-h"]}
)
def run_task(
    url: UrlOption,
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The command, after --; one argument is shell text, several are quoted"),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="tag:KEY=VALUE or agent:AGENT_ID; repeat (all tags must match)"),
    ] = None,
    task_type: Annotated[
        str, typer.Option("--type", help="Task type: shell, or one an agent handles")
    ] = "shell",
    timeout: Annotated[int, typer.Option("--timeout", min=1, max=86_400, help="Seconds per attempt")] = 300,
    priority: Annotated[int, typer.Option("--priority", min=-1000, max=1000, help="Higher runs first")] = 0,
    retries: Annotated[int, typer.Option("--retries", min=0, max=10, help="Retries after a failure")] = 0,
    input_json: Annotated[
        str | None, typer.Option("--input", help="JSON object: the input of a non-shell task")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Follow the task until it ends (default), or just send it"),
    ] = True,
    poll: Annotated[float, typer.Option("--poll", min=0.1, help="Seconds between progress checks")] = 1.0,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Send a task to agents and show live progress per agent; exit 0 only if every agent succeeded.

    Example: fleetlink tasks run --target tag:role=web -- uptime
    """
    agent_ids, tags = parse_targets(target)
    words = list(command or [])
    task_input: dict[str, Any] | None = None
    if input_json is not None:
        try:
            task_input = json.loads(input_json)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--input") from None
        if not isinstance(task_input, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--input")
    if task_type == "shell" and not words:
        raise typer.BadParameter("give the command after --, e.g. -- uptime", param_hint="COMMAND")
    if task_type != "shell" and words:
        raise typer.BadParameter(f"a {task_type} task takes --input, not a command", param_hint="COMMAND")
    with _reporting_errors(), _operator(url, operator_token) as client:
        created = client.create_task(
            type=task_type,
            command=shell_command(words) if words else None,
            input=task_input,
            agent_ids=agent_ids,
            tags=tags,
            priority=priority,
            timeout_seconds=timeout,
            max_retries=retries,
        )
        err().print(f"task {created.task_id}: {created.executions} execution(s)")
        if not wait:
            typer.echo(created.task_id)
            return
        try:
            task = _follow(client, created.task_id, poll)
        except KeyboardInterrupt:
            err().print(f"stopped following; the task goes on: fleetlink tasks show {created.task_id}")
            raise typer.Exit(130) from None
    _print_outputs(task)
    if not _all_succeeded(task):
        raise typer.Exit(1)


def _task_details(task: TaskSummary) -> Table:
    details = Table(show_header=False, box=None)
    details.add_column(style="bold", no_wrap=True)
    details.add_column(overflow="fold")
    targets = task.targets
    target_text = ", ".join(
        [f"agent:{a}" for a in targets.get("agent_ids") or []]
        + [f"tag:{k}={v}" for k, v in sorted((targets.get("tags") or {}).items())]
    )
    rows: dict[str, str] = {
        "id": escape(task.task_id),
        "type": escape(task.type),
        "command" if task.command is not None else "input": escape(
            task.command if task.command is not None else json.dumps(task.input)
        ),
        "state": _styled(task.state, _TASK_STATE_STYLE),
        "targets": escape(target_text or "-"),
        "priority": str(task.priority),
        "timeout": f"{task.timeout_seconds}s",
        "retries": str(task.max_retries),
        "created": f"{_when(task.created_at)} ({ago(task.created_at)})"
        + (f" by {escape(task.created_by)}" if task.created_by else ""),
    }
    if task.finished_at is not None:
        rows["finished"] = _when(task.finished_at)
    if task.cancelled_at is not None:
        rows["cancelled"] = _when(task.cancelled_at)
    if task.counts:
        rows["executions"] = _counts(task.counts)
    for field, value in rows.items():
        details.add_row(field, value)
    return details


@tasks_app.command("show")
def show_task(
    task_id: Annotated[str, typer.Argument(help="Task id (tsk_...)")],
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Show a task: its details, a row per agent, and every agent's output."""
    with _reporting_errors(), _operator(url, operator_token) as client:
        task = client.get_task(task_id)
    out().print(_task_details(task))
    out().print(_executions_table(task))
    _print_outputs(task)


@tasks_app.command("ls")
def list_tasks(
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
    state: Annotated[TaskStateFilter | None, typer.Option("--state", help="Only tasks in this state")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many tasks")] = 50,
) -> None:
    """List tasks, newest first."""
    with _reporting_errors(), _operator(url, operator_token) as client:
        tasks = list(itertools.islice(client.iter_tasks(state=state, page_size=min(limit, 100)), limit))
    if not tasks:
        err().print("no tasks")
        return
    table = Table()
    table.add_column("ID", no_wrap=True, min_width=max(len(t.task_id) for t in tasks))
    table.add_column("TYPE", no_wrap=True)
    table.add_column("COMMAND", overflow="ellipsis", no_wrap=True, max_width=60)
    table.add_column("STATE", no_wrap=True)
    table.add_column("EXECUTIONS", overflow="fold")
    table.add_column("CREATED", no_wrap=True)
    now = _now_ms()
    for task in tasks:
        executions = _counts(task.counts) if task.counts else str(task.execution_count or "-")
        table.add_row(
            task.task_id,
            escape(task.type),
            escape(_first_line(_what(task), 60)),
            _styled(task.state, _TASK_STATE_STYLE),
            executions,
            ago(task.created_at, now),
        )
    out().print(table)


@tasks_app.command("cancel")
def cancel_task(
    task_id: Annotated[str, typer.Argument(help="Task id (tsk_...)")],
    url: UrlOption,
    operator_token: OperatorTokenOption = None,
) -> None:
    """Cancel a task: queued executions end now, running ones are stopped by their agents (idempotent)."""
    with _reporting_errors(), _operator(url, operator_token) as client:
        task = client.cancel_task(task_id)
    counts = _counts(task.counts)
    out().print(
        f"{task.task_id} {_styled(task.state, _TASK_STATE_STYLE)}" + (f": {counts}" if counts else "")
    )
    if any(task.counts.get(status) for status in ("leased", "running")):
        err().print("[dim]running executions stop when their agents next check in[/dim]")
