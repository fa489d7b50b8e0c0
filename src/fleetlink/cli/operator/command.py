"""An operator command's shared options, declared once.

Every operator command takes ``--url`` and ``--operator-token`` (and most ``-o/--output`` and
``--json``). :func:`operator_command` registers a function whose first parameter is an
:class:`OperatorCall` and appends those options to its own, so a command lists only what is its own;
the options stay where they were on the command line (after the command's name).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer

from fleetlink.cli.operator import OperatorTokenOption, UrlOption, operator_session
from fleetlink.cli.render import JsonOption, OutputFormat, OutputOption, wants_json
from fleetlink.client.operator import OperatorClient

Command = Callable[..., None]

_KEYWORD = inspect.Parameter.KEYWORD_ONLY
_CONNECTION = (
    inspect.Parameter("url", _KEYWORD, annotation=UrlOption, default=None),
    inspect.Parameter("operator_token", _KEYWORD, annotation=OperatorTokenOption, default=None),
)
_OUTPUT = (
    inspect.Parameter("output", _KEYWORD, annotation=OutputOption, default=OutputFormat.TABLE),
    inspect.Parameter("as_json", _KEYWORD, annotation=JsonOption, default=False),
)


@dataclass(frozen=True)
class OperatorCall:
    """The shared options of one operator command: where and as whom it calls, and how it prints."""

    url: str | None
    operator_token: str | None
    #: ``-o json`` or ``--json`` was given.
    json: bool = False

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
    shared = _CONNECTION + (_OUTPUT if json_output else ())

    def register(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        _call, *own = signature.parameters.values()
        parameters = [*own, *shared]

        def run(**values: Any) -> None:
            url, token = values.pop("url"), values.pop("operator_token")
            as_json = json_output and wants_json(values.pop("output"), values.pop("as_json"))
            command(OperatorCall(url, token, as_json), **values)

        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        run.__name__, run.__qualname__, run.__doc__ = command.__name__, command.__qualname__, command.__doc__
        run.__module__ = command.__module__
        app.command(name, **settings)(run)
        return command

    return register
