"""Rendering shared by the command lines: consoles, errors as red lines, times, tags and statuses."""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from fleetlink.agent.client import FleetlinkApiError, FleetlinkClientError
from fleetlink.agent.identity import IdentityError
from fleetlink.agent.sigv4 import MissingCredentials
from fleetlink.agent.tasks.store import StoreError
from fleetlink.core.entities import AgentState, Liveness
from fleetlink.core.errors import InvalidInput
from fleetlink.core.tasks.model import ExecutionStatus, TaskState
from fleetlink.core.tunnels.model import Health

#: Width of output that is not a terminal (piped or captured) when COLUMNS is unset: rows stay whole.
PIPED_WIDTH = 200

TagOption = Annotated[list[str] | None, typer.Option("--tag", help="key=value; repeat for more tags")]


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


def fail(message: str, detail: str = "") -> typer.Exit:
    """Print an error in red; return the exit (status 1) for the caller to raise."""
    text = f"[bold red]Error:[/bold red] [red]{escape(message)}[/red]"
    if detail:
        text += f"\n{escape(detail)}"
    err().print(text)
    return typer.Exit(1)


def api_failure(error: FleetlinkApiError) -> typer.Exit:
    lines = [error.detail] if error.detail else []
    for item in error.errors:
        loc = ".".join(str(part) for part in item.get("loc", []))
        lines.append(f"  {loc}: {item.get('msg', 'invalid')}")
    return fail(f"{error.title} ({error.status})", "\n".join(lines))


@contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn client and local-state failures into a red message and exit status 1 (no traceback)."""
    try:
        yield
    except FleetlinkApiError as error:
        raise api_failure(error) from None
    except (
        FleetlinkClientError,
        IdentityError,
        InvalidInput,
        StoreError,
        MissingCredentials,
        OSError,
    ) as error:
        raise fail(str(error)) from None


def parse_tags(pairs: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` as a dict; a pair without ``=`` or with an empty key is a usage error."""
    tags: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="tag")
        tags[key.strip()] = value.strip()
    return tags


def format_tags(tags: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(tags.items()))


def now_ms() -> int:
    return int(time.time() * 1000)


def ago(at_ms: int | None, now: int | None = None) -> str:
    """``42s ago``, ``5m ago``, ``3h ago``, ``2d ago``; ``never`` for None."""
    if at_ms is None:
        return "never"
    seconds = max(0, ((now_ms() if now is None else now) - at_ms) // 1000)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def when(at_ms: int | None) -> str:
    if at_ms is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def first_line(text: str, width: int = 60) -> str:
    line = next((part for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


def duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = max(0, ms) / 1000
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


LIVENESS_STYLE: Mapping[str, str] = {
    Liveness.ONLINE: "green",
    Liveness.CONNECTION_LOST: "yellow",
    Liveness.NEVER_SEEN: "dim",
}
STATE_STYLE: Mapping[str, str] = {AgentState.ACTIVE: "green", AgentState.REVOKED: "red"}
EXECUTION_STYLE: Mapping[str, str] = {
    ExecutionStatus.SUCCEEDED: "green",
    ExecutionStatus.FAILED: "red",
    ExecutionStatus.TIMED_OUT: "red",
    ExecutionStatus.CANCELLED: "yellow",
    ExecutionStatus.EXPIRED: "yellow",
    ExecutionStatus.QUEUED: "dim",
    ExecutionStatus.LEASED: "cyan",
    ExecutionStatus.RUNNING: "cyan",
}
TASK_STATE_STYLE: Mapping[str, str] = {
    TaskState.ACTIVE: "cyan",
    TaskState.FINISHED: "green",
    TaskState.CANCELLED: "yellow",
}
HEALTH_STYLE: Mapping[str, str] = {
    Health.UP: "green",
    Health.DEGRADED: "yellow",
    Health.DOWN: "red",
    Health.UNKNOWN: "dim",
}
#: The order execution counts are listed in: an execution's life.
_EXECUTION_ORDER = tuple(ExecutionStatus)


def styled(value: str, styles: Mapping[str, str]) -> str:
    style = styles.get(value)
    return f"[{style}]{escape(value)}[/{style}]" if style else escape(value)


def count_line(by_status: Mapping[str, int]) -> str:
    """``2 succeeded, 1 failed``: non-zero counts in the order of an execution's life."""
    ordered = sorted(by_status.items(), key=lambda kv: (_rank(kv[0]), kv[0]))
    return ", ".join(f"{n} {styled(status, EXECUTION_STYLE)}" for status, n in ordered if n)


def _rank(status: str) -> int:
    return (
        _EXECUTION_ORDER.index(ExecutionStatus(status))
        if status in _EXECUTION_ORDER
        else len(_EXECUTION_ORDER)
    )
