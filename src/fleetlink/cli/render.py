"""Rendering shared by the command lines: consoles, tables (boxed on a terminal, plain when piped),
JSON output, errors as red lines with the command that fixes them, times, tags and statuses."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from pydantic import BaseModel
from rich.console import Console, JustifyMethod
from rich.markup import escape as escape_markup
from rich.table import Table
from rich.text import Text

from fleetlink.agent.identity import IdentityError
from fleetlink.agent.sigv4 import MissingCredentials
from fleetlink.agent.tasks.store import StoreError
from fleetlink.client.http import FleetlinkApiError, FleetlinkClientError, FleetlinkConnectionError
from fleetlink.core.entities import AgentState, Liveness
from fleetlink.core.errors import InvalidInput
from fleetlink.core.tasks.model import ExecutionStatus, TaskState
from fleetlink.core.tunnels.model import Health

#: Width of output that is not a terminal (piped or captured) when COLUMNS is unset: lines are not
#: wrapped (tables are printed plain there, so nothing is padded to it).
PIPED_WIDTH = 1000

#: What a terminal could act on: C0 and C1 controls (ESC starts every escape sequence), DEL, and the
#: invisible format characters that reorder or hide text (bidi overrides, zero-width, BOM).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
#: The same, less line feed and tab: for multi-line text printed as a block (a task's output).
_CONTROL_IN_BLOCK = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def visible(text: str, *, block: bool = False) -> str:
    """``text`` with every control character written out (``ESC`` as ``\\e``, others as ``\\xNN`` or
    ``\\uNNNN``), so nothing an agent or a user sent can move the cursor, retitle, clear or recolour
    the terminal, or fake a line; ``block`` keeps line feeds and tabs (multi-line output)."""
    return (_CONTROL_IN_BLOCK if block else _CONTROL).sub(_shown, text)


def escape(text: str, *, block: bool = False) -> str:
    """The one way a string from an agent or a user goes into table or plain output: control
    characters made visible (:func:`visible`), then rich markup made inert. ``-o json`` never uses it."""
    return escape_markup(visible(text, block=block))


TagOption = Annotated[list[str] | None, typer.Option("--tag", help="key=value; repeat for more tags")]


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="table (plain when piped) or json (the API's field names)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Same as -o json")]


def wants_json(output: OutputFormat, as_json: bool) -> bool:
    return as_json or output is OutputFormat.JSON


def print_json(value: BaseModel | Sequence[BaseModel]) -> None:
    """A model, or a list of them, as JSON on stdout with the API's field names."""
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    else:
        data = [item.model_dump(mode="json") for item in value]
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Column:
    name: str
    justify: JustifyMethod = "left"
    #: Longest cell on a terminal (cut with an ellipsis); piped output keeps cells whole.
    max_width: int | None = None
    fold: bool = False


def print_table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], *, title: str = "", header: bool = True
) -> None:
    """Rows of rich-markup cells: a boxed table on a terminal; aligned plain text otherwise."""
    console = out()
    if console.is_terminal:
        table = Table(title=title or None, title_justify="left", show_header=header)
        if not header:
            table.box = None
        for column in columns:
            table.add_column(
                column.name,
                justify=column.justify,
                no_wrap=not column.fold,
                overflow="fold" if column.fold else "ellipsis",
                max_width=column.max_width,
                style="bold" if not header and column is columns[0] else None,
            )
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    plain = [[Text.from_markup(cell).plain for cell in row] for row in rows]
    if header:
        plain.insert(0, [column.name for column in columns])
    widths = [max((len(row[i]) for row in plain), default=0) for i in range(len(columns))]
    lines = [Text.from_markup(title).plain] if title else []
    for row in plain:
        cells = [
            cell.rjust(width) if column.justify == "right" else cell.ljust(width)
            for cell, width, column in zip(row, widths, columns, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    console.out("\n".join(lines), highlight=False)


def print_details(rows: Mapping[str, str], *, title: str = "") -> None:
    """``field  value`` lines (values are rich markup)."""
    print_table([Column("FIELD"), Column("VALUE", fold=True)], list(rows.items()), title=title, header=False)


def section(title: str) -> None:
    """A heading line: a rule on a terminal, ``== title`` when piped."""
    console = out()
    if console.is_terminal:
        console.rule(title, align="left")
    else:
        console.out(f"== {Text.from_markup(title).plain}", highlight=False)


def _console(*, stderr: bool = False) -> Console:
    """A console on the current streams and environment (COLUMNS, NO_COLOR), made per use.

    Piped or captured, lines are never wrapped (a message stays greppable on one line)."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console.soft_wrap = True
        if not os.environ.get("COLUMNS"):
            console.width = PIPED_WIDTH
    return console


def out() -> Console:
    return _console()


def err() -> Console:
    return _console(stderr=True)


def fail(message: str, detail: str = "", *, fix: str = "") -> typer.Exit:
    """Print an error in red (and ``fix``: what to do about it); return the exit (status 1) to raise."""
    text = f"[bold red]Error:[/bold red] [red]{escape(message)}[/red]"
    if detail:
        text += f"\n{escape(detail)}"
    if fix:
        text += f"\n[bold]Fix:[/bold] {escape(fix)}"
    err().print(text)
    return typer.Exit(1)


@dataclass(frozen=True)
class CallContext:
    """Who made the failing call, so an error can name the command that fixes it."""

    url: str | None = None
    #: The agent the call was signed as (None: an operator call).
    agent_id: str | None = None
    state_dir: Path | None = None
    #: The call registers with a token (`fleetlink agent register --token`).
    registering: bool = False


#: Where ``fleetlink dev`` keeps its generated operator token (relative to the project).
DEV_TOKEN_FILE = ".fleetlink/dev/operator-token"  # noqa: S105 - a file name


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address (IPv6 in brackets or not): only this machine reaches it."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str | None) -> bool:
    return is_loopback_host(urlsplit(url or "").hostname or "")


def _register_again(context: CallContext) -> str:
    state = f" --state-dir {context.state_dir}" if context.state_dir else ""
    return f"fleetlink agent register --token <registration token>{state}"


def explain(error: FleetlinkApiError, context: CallContext) -> tuple[str, str]:
    """(why it happened, the command that fixes it) for the failures a user can act on."""
    code, agent = error.code, context.agent_id
    if error.status == 405 or code == "no-such-route":
        return (
            f"the control plane at {context.url or 'this URL'} does not have this route: it is older "
            "than this command line",
            "update the control plane (`make run` from this checkout, or `make deploy`)",
        )
    if context.registering:
        from fleetlink.cli.registration import explain_registration

        return explain_registration(error)
    if context.agent_id is None:
        if error.status == 401 and code == "operator-token-invalid":
            return (
                "the operator token is not this control plane's",
                "export FLEETLINK_OPERATOR_TOKEN=<the token `make run` (fleetlink dev) printed; "
                f"it is kept in {DEV_TOKEN_FILE}>",
            )
        if error.status == 401 and code == "operator-auth-missing":
            return (
                "the API expects AWS SigV4 (IAM) here",
                "unset FLEETLINK_OPERATOR_TOKEN and use AWS credentials",
            )
        return "", ""
    again = _register_again(context)
    if error.status == 401 and code == "unknown-key":
        return (
            f"the control plane does not know agent {agent} (was the dev stack restarted without its data?)",
            f"register again: {again}",
        )
    if error.status == 401 and code == "signature-invalid":
        return (
            f"the key of agent {agent} was replaced: a later registration took it over with another key "
            f"(e.g. `fleetlink agent register` from another state dir on this machine); "
            f"`fleetlink agents show {agent}` lists that registration event",
            f"give each state dir an agent of its own and register this one again: {again}",
        )
    if error.status == 401 and code == "signature-expired":
        return "this machine's clock is off by more than the allowed skew", "set the clock (e.g. enable NTP)"
    if error.status == 401:
        return (
            f"the control plane does not accept agent {agent}'s key: it does not know the agent (was the "
            "dev stack restarted without its data?) or the key was replaced by a later registration "
            f"(`fleetlink agents show {agent}` lists the registration events)",
            f"register again: {again}",
        )
    if error.status == 403 and code == "agent-revoked":
        return f"an operator revoked agent {agent}", f"register again with a new token: {again}"
    return "", ""


def api_failure(error: FleetlinkApiError, context: CallContext | None = None) -> typer.Exit:
    lines = [error.detail] if error.detail else []
    for item in error.errors:
        loc = ".".join(str(part) for part in item.get("loc", []))
        lines.append(f"  {loc}: {item.get('msg', 'invalid')}")
    why, fix = explain(error, context or CallContext())
    if why:
        lines.append(why)
    return fail(f"{error.title} ({error.status})", "\n".join(lines), fix=fix)


def connection_failure(error: FleetlinkConnectionError, context: CallContext) -> typer.Exit:
    fix = ""
    if is_loopback_url(context.url):
        fix = "start the dev stack (`make run`, or `fleetlink dev`) or point FLEETLINK_URL at a running one"
    return fail(str(error), fix=fix)


@contextmanager
def reporting_errors(context: CallContext | None = None) -> Iterator[None]:
    """Client and local-state failures as a red message naming the fix; exit status 1, no traceback."""
    try:
        yield
    except FleetlinkApiError as error:
        raise api_failure(error, context) from None
    except FleetlinkConnectionError as error:
        raise connection_failure(error, context or CallContext()) from None
    except MissingCredentials as error:
        raise fail(
            str(error),
            fix="against the dev stack, set FLEETLINK_OPERATOR_TOKEN instead (`make run` prints it)",
        ) from None
    except (
        FleetlinkClientError,
        IdentityError,
        InvalidInput,
        StoreError,
        OSError,
    ) as error:
        raise fail(str(error)) from None


def parse_tag(pair: str, param_hint: str = "--tag") -> tuple[str, str]:
    """``key=value``, the one tag syntax. The old ``key:value`` is still read, with a hint on stderr."""
    key, sep, value = pair.partition("=")
    if not sep:
        old_key, old_sep, old_value = pair.partition(":")
        if old_sep and old_key.strip():
            err().print(
                f"[yellow]{escape(param_hint)} {escape(pair)}: key:value is deprecated; "
                f"write {escape(old_key.strip())}={escape(old_value.strip())}[/yellow]"
            )
            key, sep, value = old_key, old_sep, old_value
    if not sep or not key.strip():
        raise typer.BadParameter(f"{pair!r} is not key=value", param_hint=param_hint)
    return key.strip(), value.strip()


def parse_tags(pairs: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` as a dict; a pair without ``=`` or with an empty key is a usage error."""
    return dict(parse_tag(pair) for pair in pairs or [])


def format_tags(tags: Mapping[str, str], requested: Mapping[str, str] | None = None) -> str:
    """``k=v, ...``; an agent's own requested tags (labels that never authorize) set apart after them."""
    shown = ", ".join(f"{key}={value}" for key, value in sorted(tags.items()))
    if requested:
        labels = ", ".join(f"{key}={value}" for key, value in sorted(requested.items()))
        shown = f"{shown} (requested: {labels})" if shown else f"(requested: {labels})"
    return shown


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
