"""The command line's own parts through typer's runner: version, completion, the systemd unit, targets,
durations, tag syntax and plain tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fleetlink.cli.agent import agent_app
from fleetlink.cli.main import app
from fleetlink.cli.operator.targets import parse_targets
from fleetlink.cli.render import Column, parse_seconds, parse_tag, print_table

runner = CliRunner()


def test_version_prints_the_package_version() -> None:
    import fleetlink

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"fleetlink {fleetlink.__version__}"


def test_shell_completion_can_be_installed() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert "--install-completion" in result.stdout


def test_install_service_print_shows_a_user_unit_for_the_state_dir(tmp_path: Path) -> None:
    # Given a state dir / When the unit is printed
    state = tmp_path / "web"
    result = runner.invoke(agent_app, ["install-service", "--print", "--state-dir", str(state)])
    # Then it runs `agent run` for that state dir, stops gracefully, starts with the user session
    assert result.exit_code == 0, result.output
    unit = result.stdout
    assert f"agent run --state-dir {state}" in unit
    assert "KillMode=mixed" in unit
    assert "WantedBy=default.target" in unit
    assert "User=" not in unit
    # And nothing was written
    assert not (tmp_path / "config").exists()


def test_install_service_writes_one_unit_per_state_dir(tmp_path: Path) -> None:
    # Given two state dirs on one machine
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    for name in ("web", "db"):
        # When a unit is installed for each
        result = runner.invoke(agent_app, ["install-service", "--state-dir", str(tmp_path / name)], env=env)
        assert result.exit_code == 0, result.output
        assert "systemctl --user daemon-reload" in result.stdout
    # Then each has its own unit, running its own state dir
    units = sorted((tmp_path / "config" / "systemd" / "user").glob("*.service"))
    assert [unit.name for unit in units] == ["fleetlink-agent-db.service", "fleetlink-agent-web.service"]
    assert f"--state-dir {tmp_path / 'db'} " in units[0].read_text()


def test_a_system_unit_names_its_user_and_the_multi_user_target(tmp_path: Path) -> None:
    args = ["install-service", "--print", "--system", "--run-as", "fleet", "--state-dir", str(tmp_path)]
    unit = runner.invoke(agent_app, args).stdout
    assert "User=fleet" in unit
    assert "WantedBy=multi-user.target" in unit


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86_400)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "-5", "1.5h", "ten"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_seconds(text)


def test_targets_ids_tags_names_and_all() -> None:
    targets = parse_targets(["agt_01KDXRYP0000000000000000AB", "tag:role=web", "web-*", "all"])
    assert targets.agent_ids == ["agt_01KDXRYP0000000000000000AB"]
    assert targets.tags == {"role": "web"}
    assert targets.names == ["web-*"]
    assert targets.everyone


def test_the_old_tag_target_spelling_shows_the_right_one() -> None:
    with pytest.raises(typer.BadParameter, match="write tag:role=web"):
        parse_targets(["tag:role:web"])


def test_the_old_tag_spelling_is_read_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_tag("role:web") == ("role", "web")
    assert "write role=web" in capsys.readouterr().err


def test_piped_tables_are_aligned_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    # When a table is printed to a pipe (captured)
    print_table([Column("ID"), Column("N", justify="right")], [["[green]a[/green]", "1"], ["bbb", "22"]])
    # Then it is aligned text, no box, no markup, no trailing spaces
    assert capsys.readouterr().out == "ID    N\na     1\nbbb  22\n"
