"""An operator command's shared options, declared once.

Every operator command takes ``--url`` and ``--operator-token`` (and most ``-o/--output`` and
``--json``). :func:`operator_command` registers a function whose first parameter is an
:class:`OperatorCall` and appends those options to its own, so a command lists only what is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer

from fleetlink.cli.operator import OperatorTokenOption, UrlOption, operator_session
from fleetlink.cli.render import wants_json
from fleetlink.cli.shared_options import OUTPUT_OPTIONS, Command, command_with, keyword
from fleetlink.client.operator import OperatorClient

_CONNECTION = (keyword("url", UrlOption, None), keyword("operator_token", OperatorTokenOption, None))


@dataclass(frozen=True)
class OperatorCall:
    """The shared options of one operator command: where and as whom it calls, and how it prints."""

    url: str | None
    operator_token: str | None
    #: ``-o json`` or ``--json`` was given.
    json: bool = False

    @classmethod
    def of(cls, given: Mapping[str, Any]) -> OperatorCall:
        as_json = "output" in given and wants_json(given["output"], given["as_json"])
        return cls(given["url"], given["operator_token"], as_json)

    @contextmanager
    def session(self) -> Iterator[OperatorClient]:
        """The operator client, closed after the block; failures printed naming the fix."""
        with operator_session(self.url, self.operator_token) as client:
            yield client


def operator_command(
    app: typer.Typer, name: str, *, json_output: bool = True, **settings: Any
) -> Callable[[Command], Command]:
    """Register ``command(call: OperatorCall, ...)`` as ``app``'s command ``name`` with the shared
    options after its own (``json_output=False``: no ``-o``/``--json``, it prints no object)."""
    shared = _CONNECTION + (OUTPUT_OPTIONS if json_output else ())
    return command_with(app, name, shared, OperatorCall.of, **settings)
