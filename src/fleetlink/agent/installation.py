"""An installed agent (``install.sh``'s layout, see ``fleetlink.release.node``) and its service.

The service is a systemd unit where systemd runs and we are root; elsewhere (containers, CI, this
kind of machine) the documented fallback: ``fleetlink agent run`` started detached, in its own
session, with a pid file and a log under the prefix. Nothing restarts a detached agent that dies:
put it under your own supervisor there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetlink.release import node

PREFIX_ENV = "FLEETLINK_INSTALL_PREFIX"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
UNIT_NAME = "fleetlink-agent"
SYSTEMD = "systemd"
DETACHED = "detached"
#: How long a stop waits for the agent to finish before it is killed.
STOP_WAIT_S = 45.0


class InstallationError(Exception):
    """Something about the installation or its service that the operator must fix."""


def systemd_running() -> bool:
    """Whether systemd is this machine's init (it made /run/systemd/system) and ``systemctl`` exists."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


@dataclass(frozen=True)
class Installation:
    prefix: Path

    @classmethod
    def current(cls) -> Installation | None:
        """The installation this process runs from (its launcher sets FLEETLINK_INSTALL_PREFIX)."""
        prefix = os.environ.get(PREFIX_ENV)
        if not prefix or not (Path(prefix) / "etc" / node.CONFIG_FILE).is_file():
            return None
        return cls(Path(prefix))

    @property
    def state_dir(self) -> Path:
        return self.prefix / "state"

    @property
    def launcher(self) -> Path:
        return self.prefix / "bin" / "fleetlink"

    @property
    def pid_file(self) -> Path:
        return self.prefix / "run" / "agent.pid"

    @property
    def log_file(self) -> Path:
        return self.prefix / "log" / "agent.log"

    @property
    def release_key_file(self) -> Path:
        return self.prefix / "etc" / node.KEY_FILE

    def config(self) -> dict[str, Any]:
        path = self.prefix / "etc" / node.CONFIG_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def update_config(self, **values: Any) -> None:
        path = self.prefix / "etc" / node.CONFIG_FILE
        config = self.config() | values
        temp = path.with_name(f".{path.name}.new")
        temp.write_text(json.dumps(config, indent=2) + "\n")
        os.replace(temp, path)

    @property
    def python(self) -> str:
        return str(self.config().get("python") or "python3")

    # --- the service --------------------------------------------------------------------------

    def run_command(self) -> list[str]:
        return [str(self.launcher), "agent", "run", "--state-dir", str(self.state_dir)]

    def running_pid(self) -> int | None:
        """The detached agent's pid, if it runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        return pid if b"run" in cmdline and str(self.state_dir).encode() in cmdline else None

    def start(self, unit_text: str) -> str:
        """Start (or leave running) the agent as a service; says how."""
        if systemd_running() and os.geteuid() == 0:
            unit = SYSTEM_UNIT_DIR / f"{UNIT_NAME}.service"
            unit.write_text(unit_text)
            _systemctl("daemon-reload")
            _systemctl("enable", "--now", UNIT_NAME)
            self.update_config(service=SYSTEMD, unit=UNIT_NAME)
            return f"systemd unit {UNIT_NAME} enabled and started ({unit})"
        self.update_config(service=DETACHED)
        pid = self.running_pid()
        if pid is not None:
            return f"already running (pid {pid}); log {self.log_file}"
        pid = self._spawn()
        why = "systemd is not running here" if not systemd_running() else "not root: no system unit"
        return f"{why}: started detached (pid {pid}, pid file {self.pid_file}, log {self.log_file})"

    def _spawn(self) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log, open(os.devnull, "rb") as devnull:
            process = subprocess.Popen(  # noqa: S603 - the installation's own launcher
                self.run_command(),
                stdin=devnull,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(os.environ, FLEETLINK_STATE_DIR=str(self.state_dir), NO_COLOR="1"),
            )
        temp = self.pid_file.with_name(".agent.pid.new")
        temp.write_text(f"{process.pid}\n")
        os.replace(temp, self.pid_file)
        return process.pid

    def stop(self) -> bool:
        """Stop the agent (and, with systemd, disable its unit); whether one was running."""
        if self.config().get("service") == SYSTEMD and systemd_running():
            _systemctl("disable", "--now", UNIT_NAME, check=False)
            return True
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline and self.running_pid() == pid and _alive(pid):
            time.sleep(0.1)
        if self.running_pid() == pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def restart(self) -> None:
        if self.config().get("service") == SYSTEMD and systemd_running():
            _systemctl("restart", UNIT_NAME)
            return
        self.stop()
        self._spawn()

    def remove_service(self) -> None:
        """Stop the agent and remove its unit file (if any)."""
        self.stop()
        unit = SYSTEM_UNIT_DIR / f"{UNIT_NAME}.service"
        if self.config().get("service") == SYSTEMD and unit.is_file():
            unit.unlink()
            _systemctl("daemon-reload", check=False)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _systemctl(*args: str, check: bool = True) -> None:
    done = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)  # noqa: S603,S607
    if check and done.returncode != 0:
        raise InstallationError(f"systemctl {' '.join(args)} failed: {done.stderr.strip()}")
