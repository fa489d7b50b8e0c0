"""Lists that are complete or say they are not: every ``ls`` reads the API page by page up to
``--limit`` rows (or all of them with ``--all``), and when rows are left it prints, on stderr, the
command that continues from where it stopped (``more: fleetlink agents ls --cursor …``)."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, Protocol, TypeVar

import typer

from fleetlink.cli.render import err, escape

#: The API's largest page.
MAX_PAGE = 100
#: Rows a list shows without --limit or --all.
DEFAULT_LIMIT = 50

Item = TypeVar("Item", covariant=True)
T = TypeVar("T")

LimitOption = Annotated[
    int,
    typer.Option(
        "--limit", min=1, metavar="N", help="Show at most N rows; a hint names the command for the rest"
    ),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every row, however many pages that takes")]
CursorOption = Annotated[
    str | None,
    typer.Option(
        "--cursor", metavar="CURSOR", help="Continue a list where the last one stopped", show_default=False
    ),
]


class Page(Protocol[Item]):
    @property
    def items(self) -> Sequence[Item]: ...

    @property
    def cursor(self) -> str | None: ...


@dataclass(frozen=True)
class Taken(Generic[T]):
    """The rows read, and the cursor to continue from (None: the list is complete)."""

    items: list[T]
    cursor: str | None


def take(
    fetch: Callable[[int, str | None], Page[T]],
    *,
    limit: int,
    every: bool,
    cursor: str | None = None,
) -> Taken[T]:
    """Rows from ``fetch(page_size, cursor)`` up to ``limit`` (all of them when ``every``).

    A cursor the API hands back may lead to an empty page; when the limit is reached, one more row is
    asked for so that "more" is said only when there is more."""
    items: list[T] = []
    while True:
        want = MAX_PAGE if every else min(MAX_PAGE, limit - len(items))
        page = fetch(want, cursor)
        items.extend(page.items)
        cursor = page.cursor
        if not cursor:
            return Taken(items, None)
        if not every and len(items) >= limit:
            peek = fetch(1, cursor)
            return Taken(items, cursor if peek.items or peek.cursor else None)


def more_hint(command: str, cursor: str | None, *, limit: int, options: Sequence[str] = ()) -> None:
    """Say on stderr that rows were left, and how to see them (nothing when the list is complete)."""
    if cursor is None:
        return
    words = ["fleetlink", *command.split(), *options, "--limit", str(limit), "--cursor", cursor]
    err().print(
        f"[yellow]more: {escape(shlex.join(words))}[/yellow] "
        f"[dim](or {escape(shlex.join(['fleetlink', *command.split(), *options, '--all']))})[/dim]"
    )
