"""Options a group of commands shares: declared once, after each command's own, reaching the command
as one object."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from fleetlink.cli.main import app
from fleetlink.cli.options import StateDirOption
from fleetlink.cli.render import OutputFormat
from fleetlink.cli.shared_options import OUTPUT_OPTIONS, command_group, command_with, keyword

runner = CliRunner()


def test_a_command_gets_its_own_arguments_and_the_shared_options_as_one_object(tmp_path: Path) -> None:
    # Given a group whose command declares only its own parameters
    group = command_group("A test group.")
    seen: list[tuple[Mapping[str, Any], str, int]] = []

    @command_with(group, "show", (keyword("state_dir", StateDirOption, None), *OUTPUT_OPTIONS), dict)
    def show(shared: Mapping[str, Any], name: str, count: int = 1) -> None:
        """Show a name."""
        seen.append((shared, name, count))

    # When it runs with its own arguments and the shared options after them
    result = runner.invoke(group, ["show", "web", "--count", "2", "--state-dir", str(tmp_path), "-o", "json"])
    # Then each reached the command where it belongs, and its help lists both
    assert result.exit_code == 0, result.output
    assert seen == [({"state_dir": tmp_path, "output": OutputFormat.JSON, "as_json": False}, "web", 2)]
    usage = runner.invoke(group, ["show", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).stdout
    assert all(option in usage for option in ("--count", "--state-dir", "--output", "--json", "Show a name."))


def test_every_operator_command_takes_the_url_with_the_token() -> None:
    # Given the whole command line
    root = typer.main.get_command(app)

    def leaves(group: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
        found: list[tuple[tuple[str, ...], Any]] = []
        for name, command in group.commands.items():
            found += (
                leaves(command, (*path, name)) if hasattr(command, "commands") else [((*path, name), command)]
            )
        return found

    # When its commands that take an operator token are listed
    operator = {
        path: {param.name for param in command.params}
        for path, command in leaves(root, ())
        if any(param.name == "operator_token" for param in command.params)
    }
    # Then there are many, and each takes --url (the environment's FLEETLINK_URL) too
    assert len(operator) >= 25
    assert [path for path, names in operator.items() if "url" not in names] == []
