"""An operator command's shared options, declared once.

Every operator command takes ``--url`` and ``--operator-token`` (and most ``-o/--output`` and
``--json``). :func:`operator_command` registers a function whose first parameter is an
:class:`OperatorCall` and appends those options to its own, so a command lists only what is its own.
An ``ls`` registered with :func:`list_command` gets a :class:`ListCall`: the paging options too, the
read and the printing every list does the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Self, TypeVar

import typer
from pydantic import BaseModel

from fleetlink.cli.operator import OperatorTokenOption, UrlOption, operator_session
from fleetlink.cli.paging import (
    DEFAULT_LIMIT,
    AllOption,
    CursorOption,
    LimitOption,
    Page,
    Taken,
    more_hint,
    take,
)
from fleetlink.cli.render import err, print_json, wants_json
from fleetlink.cli.shared_options import OUTPUT_OPTIONS, Command, command_with, keyword
from fleetlink.client.operator import OperatorClient

_CONNECTION = (keyword("url", UrlOption, None), keyword("operator_token", OperatorTokenOption, None))
_PAGING = (
    keyword("limit", LimitOption, DEFAULT_LIMIT),
    keyword("every", AllOption, False),
    keyword("cursor", CursorOption, None),
)

Row = TypeVar("Row", bound=BaseModel)
Answer = TypeVar("Answer", bound=BaseModel | Sequence[BaseModel])


@dataclass(frozen=True)
class OperatorCall:
    """The shared options of one operator command: where and as whom it calls, and how it prints."""

    url: str | None
    operator_token: str | None
    #: ``-o json`` or ``--json`` was given.
    json: bool = False

    @classmethod
    def of(cls, given: Mapping[str, Any]) -> Self:
        as_json = "output" in given and wants_json(given["output"], given["as_json"])
        return cls(given["url"], given["operator_token"], as_json)

    @contextmanager
    def session(self) -> Iterator[OperatorClient]:
        """The operator client, closed after the block; failures printed naming the fix."""
        with operator_session(self.url, self.operator_token) as client:
            yield client

    def answer(self, ask: Callable[[OperatorClient], Answer], show: Callable[[Answer], None]) -> None:
        """Ask the API (``ask(client)``, in one session), then print the answer: the API's object
        with -o json, else ``show(answer)``."""
        with self.session() as client:
            answer = ask(client)
        if self.json:
            print_json(answer)
        else:
            show(answer)


def operator_command(
    app: typer.Typer, name: str, *, json_output: bool = True, **settings: Any
) -> Callable[[Command], Command]:
    """Register ``command(call: OperatorCall, ...)`` as ``app``'s command ``name`` with the shared
    options after its own (``json_output=False``: no ``-o``/``--json``, it prints no object)."""
    shared = _CONNECTION + (OUTPUT_OPTIONS if json_output else ())
    return command_with(app, name, shared, OperatorCall.of, **settings)


@dataclass(frozen=True)
class ListCall(OperatorCall):
    """An ``ls``: the operator call, and how much of the list to read (``--limit``, ``--all``,
    ``--cursor``)."""

    limit: int = DEFAULT_LIMIT
    every: bool = False
    cursor: str | None = None

    @classmethod
    def of(cls, given: Mapping[str, Any]) -> Self:
        return cls(
            **asdict(OperatorCall.of(given)),
            limit=given["limit"],
            every=given["every"],
            cursor=given["cursor"],
        )

    def take(self, fetch: Callable[[int, str | None], Page[Row]]) -> Taken[Row]:
        """The rows ``fetch(page_size, cursor)`` answers, up to the limit (see :func:`take`)."""
        return take(fetch, limit=self.limit, every=self.every, cursor=self.cursor)

    def show(
        self,
        command: str,
        taken: Taken[Row],
        table: Callable[[list[Row]], None],
        *,
        options: Sequence[str] = (),
        empty: str | None = None,
    ) -> None:
        """Print the rows: with -o json as one array, else ``table(rows)`` (or ``empty``, on stderr,
        when there are none); then, when rows were left, the ``command`` with ``options`` that
        continues."""
        if self.json:
            print_json(taken.items)
            options = [*options, "-o", "json"]
        elif empty is not None and not taken.items:
            err().print(empty)
            return
        else:
            table(taken.items)
        more_hint(command, taken.cursor, limit=self.limit, options=options)


def list_command(app: typer.Typer, name: str, **settings: Any) -> Callable[[Command], Command]:
    """Register an ``ls``: ``command(call: ListCall, ...)``, with ``--limit``, ``--all`` and
    ``--cursor`` after its own options, then the operator command's."""
    return command_with(app, name, _PAGING + _CONNECTION + OUTPUT_OPTIONS, ListCall.of, **settings)
