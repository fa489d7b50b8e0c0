"""The systemd unit running ``fleetlink agent run`` for one state dir (``agent install-service``)."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

from fleetlink.agent.identity import DEFAULT_STATE_DIR, IdentityStore

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")


def fleetlink_command() -> str:
    """How systemd should start this fleetlink: the installed script, else this Python's module."""
    script = Path(sys.argv[0])
    if script.name == "fleetlink" and script.exists():
        return shlex.quote(str(script.resolve()))
    return f"{shlex.quote(sys.executable)} -m fleetlink.cli"


def unit_name(state_dir: Path) -> str:
    """``fleetlink-agent`` for the default state dir, ``fleetlink-agent-<dir name>`` for another."""
    if state_dir == IdentityStore(DEFAULT_STATE_DIR).path:
        return "fleetlink-agent"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", state_dir.name).strip("-.") or "agent"
    return f"fleetlink-agent-{slug}"


def systemd_unit(
    *,
    command: str,
    state_dir: Path,
    agent_id: str | None,
    system: bool,
    run_as: str | None,
    concurrency: int,
    stop_grace_s: float,
) -> str:
    """A systemd service running ``fleetlink agent run`` for the agent of ``state_dir``."""
    who = f"agent {agent_id}" if agent_id else "agent"
    lines = [
        "[Unit]",
        f"Description=fleetlink {who} (state dir {state_dir})",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={command} agent run --state-dir {shlex.quote(str(state_dir))} "
        f"--concurrency {concurrency} --stop-grace {stop_grace_s:g}",
        "Environment=PYTHONUNBUFFERED=1 NO_COLOR=1",
        # an exit is an error retrying inside could not fix (e.g. revoked): retry slowly, then give up
        "Restart=on-failure",
        "RestartSec=30",
        # SIGTERM to the daemon only: it stops claiming and gives running tasks --stop-grace to end
        "KillMode=mixed",
        f"TimeoutStopSec={int(stop_grace_s) + 30}",
    ]
    if system and run_as:
        lines.append(f"User={run_as}")
    lines += ["", "[Install]", f"WantedBy={'multi-user.target' if system else 'default.target'}", ""]
    return "\n".join(lines)


def unit_path(unit: str, *, system: bool) -> Path:
    """Where the unit file goes: /etc/systemd/system, or the user's systemd config folder."""
    if system:
        return SYSTEM_UNIT_DIR / f"{unit}.service"
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "systemd" / "user" / f"{unit}.service"
