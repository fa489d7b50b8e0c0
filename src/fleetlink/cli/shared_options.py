"""Command groups, and the options a group of commands shares, declared once.

:func:`command_with` registers a function whose first parameter receives an object built from the
shared options, and appends those options to the function's own: each command lists only what is
its own, and the options stay where they were on the command line (after the command's name).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import typer

from fleetlink.cli.render import JsonOption, OutputFormat, OutputOption

Command = Callable[..., None]


def keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """A shared option: ``name: annotation = default`` (an ``Annotated`` typer option)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


#: ``-o/--output`` and ``--json``, shared by every command that prints an object.
OUTPUT_OPTIONS = (keyword("output", OutputOption, OutputFormat.TABLE), keyword("as_json", JsonOption, False))


def command_with(
    app: typer.Typer,
    name: str,
    shared: Sequence[inspect.Parameter],
    build: Callable[[Mapping[str, Any]], object],
    **settings: Any,
) -> Callable[[Command], Command]:
    """Register ``command(shared_object, ...its own parameters)`` as ``app``'s command ``name``: the
    ``shared`` options follow its own, and ``build`` makes its first argument from their values."""
    names = {parameter.name for parameter in shared}

    def register(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        _shared_object, *own = signature.parameters.values()
        parameters = [*own, *shared]

        def run(**values: Any) -> None:
            given = {key: values.pop(key) for key in names}
            command(build(given), **values)

        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        run.__name__, run.__qualname__, run.__doc__ = command.__name__, command.__qualname__, command.__doc__
        run.__module__ = command.__module__
        app.command(name, **settings)(run)
        return command

    return register


def command_group(help: str) -> typer.Typer:
    """A group of commands (``fleetlink <group> <command>``) and its help. Its empty callback keeps a
    lone command a subcommand: without one, typer runs a group of one command as that command."""
    group = typer.Typer(help=help, no_args_is_help=True)
    group.callback()(_group)
    return group


def _group() -> None:
    """The help is the group's (given to :func:`command_group`)."""
