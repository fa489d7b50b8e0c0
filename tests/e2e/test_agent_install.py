"""The agent-only install: ``pip install fleetlink[agent]`` into a fresh venv, from PyPI, without the server.

Slow (builds the wheel and downloads the agent's dependencies); it prints the installed size and the
distribution list, the figures the agent's footprint is judged by.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
#: What only the Lambda functions need; the agent must install and run without them.
SERVER_ONLY = {"aws-lambda-powertools", "pynamodb", "boto3", "botocore"}
#: Guards against a hung pip; never an assertion about speed.
INSTALL_TIMEOUT_S = 900


def _clean_env() -> dict[str, str]:
    """This environment without anything that would put the repository's sources on the path."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}


def _run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=_clean_env(),
        timeout=INSTALL_TIMEOUT_S,
    )


def _tree_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file() and not path.is_symlink())


@pytest.fixture(scope="module")
def agent_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding ``fleetlink[agent]`` built from this checkout."""
    root = tmp_path_factory.mktemp("agent-install") / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    installed = _run(
        root / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
        f"{REPO}[agent]", cwd=root.parent,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return root


def _distributions(root: Path) -> dict[str, str]:
    listed = _run(root / "bin" / "python", "-m", "pip", "list", "--format", "json", cwd=root.parent)
    assert listed.returncode == 0, listed.stderr
    return {item["name"].lower(): item["version"] for item in json.loads(listed.stdout)}


def test_the_agent_install_pulls_in_none_of_the_server(agent_venv: Path) -> None:
    # Given fleetlink[agent] installed into a fresh venv
    # When its distributions are listed
    installed = _distributions(agent_venv)
    # Then fleetlink and the agent's client are there, and nothing only the server needs
    assert {"fleetlink", "httpx", "typer", "pydantic", "cryptography"} <= set(installed)
    assert not SERVER_ONLY & set(installed), sorted(SERVER_ONLY & set(installed))
    site_packages = next((agent_venv / "lib").glob("python3*/site-packages"))
    size_mb = _tree_bytes(site_packages) / 1_000_000
    listing = ", ".join(f"{name} {version}" for name, version in sorted(installed.items()))
    sys.stdout.write(
        f"\nagent-only install: {size_mb:.1f} MB in site-packages; {len(installed)} distributions: "
    )
    sys.stdout.write(listing + "\n")


def test_fleetlink_agent_help_runs_in_the_agent_install(agent_venv: Path) -> None:
    # Given fleetlink[agent] installed into a fresh venv
    # When `fleetlink agent --help` runs from it
    result = _run(agent_venv / "bin" / "fleetlink", "agent", "--help", cwd=agent_venv.parent)
    # Then it prints the agent commands and exits 0
    assert result.returncode == 0, result.stdout + result.stderr
    for command in ("register", "heartbeat", "run", "whoami"):
        assert command in result.stdout
    assert "unavailable" not in result.stderr


def test_the_agent_commands_load_no_server_module(agent_venv: Path) -> None:
    # Given fleetlink[agent] installed into a fresh venv
    # When the whole command line is imported there
    probe = (
        "import sys, fleetlink.cli.main as m; "
        "print(sorted(n for n in sys.modules if n.startswith(('fleetlink.api', 'fleetlink.store', "
        "'fleetlink.local', 'boto3', 'pynamodb', 'aws_lambda_powertools'))))"
    )
    result = _run(agent_venv / "bin" / "python", "-c", probe, cwd=agent_venv.parent)
    # Then it loads none of the server's modules
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
