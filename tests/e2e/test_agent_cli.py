"""The agent and operator command lines against a real `fleetlink dev` over real HTTP.

The CLI runs in-process (typer's CliRunner) so each test can give its machine a unique machine id:
the dev server is shared by the session and a fingerprint is per machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from fleetlink.agent import hardware
from fleetlink.agent.identity import IdentityStore
from fleetlink.cli.agent import agent_app
from fleetlink.cli.operator.agents import agents_app
from fleetlink.cli.operator.tokens import tokens_app
from tests.e2e.conftest import DevServer

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


class Cli:
    """Runs `fleetlink agent|agents|tokens ...` against the dev server, with its own state dir."""

    def __init__(self, server: DevServer, state_dir: Path) -> None:
        self.runner = CliRunner()
        self.env = {
            "FLEETLINK_URL": server.url,
            "FLEETLINK_OPERATOR_TOKEN": server.operator_token,
            "FLEETLINK_STATE_DIR": str(state_dir),
            "FLEETLINK_REGISTRATION_TOKEN": "",
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }

    def run(self, app: typer.Typer, args: Sequence[str], *, expect: int = 0) -> Result:
        result = self.runner.invoke(app, list(args), env=self.env)
        assert result.exit_code == expect, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.output
        return result

    def token(self, *args: str) -> str:
        return self.run(tokens_app, ["create", *args]).stdout.strip()


@pytest.fixture
def this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A machine id of its own for this test (the real hardware otherwise)."""
    machine_id = uuid.uuid4().hex
    path = tmp_path / "machine-id"
    path.write_text(f"{machine_id}\n")
    monkeypatch.setattr(hardware, "MACHINE_ID_FILES", (path,))
    return machine_id


@pytest.fixture
def cli(dev_server: DevServer, tmp_path: Path, this_machine: str) -> Cli:
    return Cli(dev_server, tmp_path / "state")


@pytest.fixture
def run_tag() -> str:
    """A tag only this test's agents carry, to find them among the session's."""
    return f"run={uuid.uuid4().hex}"


def test_token_register_heartbeat_list_show_revoke(cli: Cli, run_tag: str, tmp_path: Path) -> None:
    # Given a registration token minted by the operator
    token = cli.token("--ttl", "600", "--max-uses", "1", "--tag", run_tag, "--name-prefix", "e2e")
    assert token.startswith("tok_")
    # When the machine registers with it
    agent_id = cli.run(agent_app, ["register", "--token", token, "--tag", "role=cli"]).stdout.strip()
    # Then it has an agent id and a saved identity with a 0600 key
    assert agent_id.startswith("agt_")
    store = IdentityStore(tmp_path / "state")
    identity = store.load_identity()
    assert identity is not None
    assert identity.agent_id == agent_id
    assert store.key_path.stat().st_mode & 0o777 == 0o600

    # When it heartbeats / Then the server's answer is printed
    assert "heartbeat ok" in cli.run(agent_app, ["heartbeat"]).stdout

    # And the operator sees it online, seen seconds ago, with its tags
    key, _, value = run_tag.partition("=")
    listed = cli.run(agents_app, ["ls", "--tag", f"{key}={value}"]).stdout
    (row,) = [line for line in listed.splitlines() if agent_id in line]
    assert "online" in row
    assert "s ago" in row
    assert "role=cli" in row

    # And its details list the register event
    shown = cli.run(agents_app, ["show", agent_id]).stdout
    assert "Registration history" in shown
    assert "register" in shown.split("Registration history", 1)[1]

    # When the operator revokes it
    assert "revoked" in cli.run(agents_app, ["revoke", agent_id]).stdout
    # Then its next heartbeat fails with a clear message and exit status 1
    refused = cli.run(agent_app, ["heartbeat"], expect=1)
    assert "this agent is revoked" in refused.stderr


def test_registering_again_keeps_the_agent_id_without_a_token(cli: Cli, run_tag: str) -> None:
    # Given a registered machine whose one-use token is spent
    first = cli.run(agent_app, ["register", "--token", cli.token("--tag", run_tag)]).stdout.strip()
    # When it registers again with its saved key and no token
    again = cli.run(agent_app, ["register"])
    # Then it is the same agent, re-registered with full similarity
    assert again.stdout.strip() == first
    assert "re-registered (similarity 100)" in again.stderr


def test_whoami_shows_the_saved_identity(cli: Cli, run_tag: str) -> None:
    agent_id = cli.run(agent_app, ["register", "--token", cli.token("--tag", run_tag)]).stdout.strip()
    assert agent_id in cli.run(agent_app, ["whoami"]).stdout


def test_heartbeat_before_registering_says_what_to_do(cli: Cli) -> None:
    result = cli.run(agent_app, ["heartbeat"], expect=1)
    assert "fleetlink agent register" in result.stderr


def test_a_wrong_operator_token_is_an_error_message_not_a_traceback(cli: Cli) -> None:
    result = cli.run(agents_app, ["ls", "--operator-token", "not-the-token"], expect=1)
    assert "a valid operator token is required" in result.stderr


def test_a_spent_token_is_refused(cli: Cli, dev_server: DevServer, run_tag: str, tmp_path: Path) -> None:
    # Given a one-use token already used by this machine
    token = cli.token("--tag", run_tag)
    cli.run(agent_app, ["register", "--token", token])
    # And a second machine (its own machine id and state dir)
    (tmp_path / "machine-id").write_text(f"{uuid.uuid4().hex}\n")
    other = Cli(dev_server, tmp_path / "other")
    # When a second machine tries it / Then it is refused: its holder is told the token is used up
    result = other.run(agent_app, ["register", "--token", token], expect=1)
    assert "is used up" in result.stderr
    assert "Fix:" in result.stderr
