"""Command lines: ``agent_app`` (this machine as an agent), ``agents_app`` and ``tokens_app`` (operator).

``fleetlink.cli`` mounts them as ``fleetlink agent``, ``fleetlink agents`` and ``fleetlink tokens``.
API errors print the problem's title and detail in red and exit 1; secrets (private keys, operator
tokens) are never printed, and a registration token only once, when it is created.
"""

from __future__ import annotations

import datetime
import itertools
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fleetlink.agent.client import (
    FleetlinkApiError,
    FleetlinkClient,
    FleetlinkClientError,
    OperatorClient,
)
from fleetlink.agent.hardware import collect_hardware, fingerprint
from fleetlink.agent.identity import Identity, IdentityError, IdentityStore, key_alg_of
from fleetlink.api.schemas import AgentSummary, HeartbeatAck
from fleetlink.core.entities import KeyAlg
from fleetlink.core.errors import InvalidInput

agent_app = typer.Typer(
    help="This machine as a fleetlink agent: register, heartbeat, whoami.", no_args_is_help=True
)
agents_app = typer.Typer(help="Operator: list, inspect, revoke and tag agents.", no_args_is_help=True)
tokens_app = typer.Typer(help="Operator: registration tokens.", no_args_is_help=True)

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
        help="Operator bearer token (local dev stack)",
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
    except (FleetlinkClientError, IdentityError, InvalidInput, OSError) as error:
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
    return OperatorClient(url, operator_token)


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
        key, key_alg = store.load_or_create_key(alg)
        hardware = collect_hardware(store.path)
        agent_fingerprint = fingerprint(hardware)
        with FleetlinkClient(api_url) as client:
            result = client.register(
                token, hardware, key, key_alg, tags=tags, name=name, fingerprint=agent_fingerprint
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
    return identity, FleetlinkClient(identity.api_url, private_key=key, key_alg=identity.key_alg)


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
