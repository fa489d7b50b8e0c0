"""Self-update of an installed agent: the built-in ``upgrade`` task type, and what makes it safe.

1. The handler (old version N) downloads release X through a presigned link, checks its signature
   against the pinned release key (a key change is accepted only signed by the pinned key), its size
   and SHA-256, and installs it side by side (``versions/X``): nothing that runs is touched, and a
   bad artifact, another platform, a cut download or a full disk fail the execution here.
2. It writes ``upgrade.json`` in the state dir and starts the switcher, a detached process running
   version N's code: it stops the agent, points ``current`` at X and starts it.
3. Version X, before anything else, heartbeats once: then it records the execution succeeded,
   reports its version (the agent's history shows the upgrade) and marks the upgrade committed.
4. If X has not committed within ``HEALTH_DEADLINE_S`` (it crashed, or cannot reach the API), the
   switcher stops it, points ``current`` back at N and starts N, which records the execution failed
   and reports the rollback. The task's error budget counts that failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fleetlink
from fleetlink.agent.identity import IdentityStore
from fleetlink.agent.installation import SYSTEMD, UNIT_NAME, Installation, systemd_running
from fleetlink.agent.tasks.handlers import in_process
from fleetlink.agent.tasks.store import AgentStore, ExecutionResult, ResultStatus
from fleetlink.client.agent import FleetlinkClient
from fleetlink.client.http import FleetlinkClientError, segment
from fleetlink.release import manifest, node, signing

UPGRADE_TYPE = "upgrade"
MARKER_FILE = "upgrade.json"
#: The new version must heartbeat within this many seconds of being started, or it is rolled back
#: (FLEETLINK_UPGRADE_HEALTH_DEADLINE_S overrides it).
HEALTH_DEADLINE_S = float(os.environ.get("FLEETLINK_UPGRADE_HEALTH_DEADLINE_S") or 60.0)
#: How long the handler waits to be stopped by the switcher before it gives up.
HOLD_S = 120.0
SWITCHING, COMMITTED, ROLLED_BACK = "switching", "committed", "rolled_back"


class UpgradeError(Exception):
    """An upgrade that must not (or could not) go on: the running version stays."""


@dataclass
class Marker:
    execution_id: str
    attempt: int
    from_version: str
    to_version: str
    started_at: int
    phase: str = SWITCHING
    reason: str = ""

    @staticmethod
    def path(state_dir: Path) -> Path:
        return state_dir / MARKER_FILE

    @classmethod
    def read(cls, state_dir: Path) -> Marker | None:
        try:
            return cls(**json.loads(cls.path(state_dir).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, state_dir: Path) -> None:
        temp = self.path(state_dir).with_name(f".{MARKER_FILE}.new")
        temp.write_text(json.dumps(asdict(self)))
        os.replace(temp, self.path(state_dir))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def agent_client(state_dir: Path) -> tuple[str, FleetlinkClient]:
    """(agent id, a client signing as it) from the state dir."""
    from fleetlink.agent.app import agent_client as saved_agent  # the app imports this module

    try:
        identity, client = saved_agent(IdentityStore(state_dir))
    except FleetlinkClientError as error:
        raise UpgradeError(str(error)) from None
    return identity.agent_id, client


def pinned_key(installation: Installation, client: FleetlinkClient, key_id: str) -> str:
    """The release key to verify with: the pinned one, or its successor if the pinned key signed it."""
    pinned = installation.release_key_file.read_text()
    if manifest.key_id_of(pinned) == key_id:
        return pinned
    current = client._send("GET", "/releases/key")
    if current.get("key_id") != key_id or current.get("previous_key_id") != manifest.key_id_of(pinned):
        raise UpgradeError(
            f"the release is signed by key {key_id}, which the pinned key {manifest.key_id_of(pinned)} "
            "did not sign over to: refused"
        )
    new_key = signing.load_public_pem(str(current["public_key"]))
    try:
        signing.verify_rotation(signing.load_public_pem(pinned), new_key, str(current["rotation_signature"]))
    except signing.ReleaseSignatureError as error:
        raise UpgradeError(str(error)) from None
    pem = signing.public_pem(new_key)
    installation.release_key_file.write_text(pem)
    return pem


def fetch_and_install(installation: Installation, client: FleetlinkClient, version: str) -> dict[str, Any]:
    """Download, verify and install ``version`` side by side; its signed manifest."""
    platform_name = manifest.this_platform()
    try:
        release: dict[str, Any] = client._send(
            "GET",
            f"/agent/releases/{segment(version)}",
            params={"platform": platform_name},
            auth=client._signed_as(),
        )
    except Exception as error:  # the API's problem (404: no such release) says why
        raise UpgradeError(f"no release {version} for {platform_name}: {error}") from None
    if (release.get("version"), release.get("platform")) != (version, platform_name):
        raise UpgradeError("the API answered another release than asked: refused")
    pem = pinned_key(installation, client, str(release.get("key_id")))
    try:
        signing.verify_manifest(
            signing.load_public_pem(pem),
            version,
            platform_name,
            release["sha256"],
            int(release["size"]),
            release["signature"],
        )
        artifact = installation.prefix / "downloads" / manifest.artifact_file_name(version, platform_name)
        manifest.download(str(release["download_url"]), artifact, release)
        try:
            node.install_artifact(artifact, installation.prefix, release, pem, installation.python)
        finally:
            artifact.unlink(missing_ok=True)
    except (signing.ReleaseSignatureError, manifest.ReleaseError) as error:
        raise UpgradeError(str(error)) from None
    return release


def _own_execution(state_dir: Path, version: str) -> tuple[str, int]:
    with AgentStore.in_state_dir(state_dir) as store:
        for record in store.in_flight():
            if record.type == UPGRADE_TYPE and (record.input or {}).get("version") == version:
                return record.execution_id, record.attempt
    raise UpgradeError("this upgrade's execution is not in the agent's store")


@in_process  # the switcher stops the daemon it runs in; the outcome is settled on the next start
def handle_upgrade(task_input: dict[str, Any]) -> Any:
    """The ``upgrade`` task type: input ``{"version": "X"}``."""
    installation = Installation.current()
    if installation is None:
        raise UpgradeError("this agent was not installed by the install script: reinstall it to upgrade it")
    version = str(task_input.get("version") or "")
    if not re.match(manifest.VERSION_PATTERN, version):
        raise UpgradeError(f"not a version: {version!r}")
    current = node.current_version(installation.prefix) or fleetlink.__version__
    if version == current:
        return {"version": version, "changed": False}
    _, client = agent_client(installation.state_dir)
    with client:
        fetch_and_install(installation, client, version)
    execution_id, attempt = _own_execution(installation.state_dir, version)
    Marker(execution_id, attempt, current, version, _now_ms()).write(installation.state_dir)
    switch_detached(installation, current)
    time.sleep(HOLD_S)  # the switcher stops this process long before
    raise UpgradeError(f"the agent was not restarted into {version}")


# --- the switcher: a detached process on the old version's code --------------------------------------


def switch_detached(installation: Installation, running_version: str) -> None:
    lib = installation.prefix / "versions" / running_version / "lib"
    log = installation.log_file
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(lib), FLEETLINK_INSTALL_PREFIX=str(installation.prefix))
    with log.open("ab") as out, open(os.devnull, "rb") as devnull:
        subprocess.Popen(  # noqa: S603 - this installation's python and code
            [
                installation.python,
                "-s",
                "-m",
                "fleetlink.cli",
                "agent",
                "upgrade-apply",
                "--prefix",
                str(installation.prefix),
            ],
            stdin=devnull,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )


def _kill_agent(installation: Installation) -> None:
    """Stop the agent at once (no graceful stop: it must not report the upgrade it is in)."""
    if installation.config().get("service") == SYSTEMD and systemd_running():
        subprocess.run(["systemctl", "kill", "--signal=SIGKILL", UNIT_NAME], check=False)  # noqa: S603,S607
        return
    pid = installation.running_pid()
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while installation.running_pid() == pid and time.monotonic() < deadline:
            time.sleep(0.05)
    installation.pid_file.unlink(missing_ok=True)


def _start_agent(installation: Installation) -> None:
    if installation.config().get("service") == SYSTEMD and systemd_running():
        subprocess.run(["systemctl", "restart", UNIT_NAME], check=False)  # noqa: S603,S607
        return
    installation.restart()


def apply(installation: Installation, deadline_s: float = HEALTH_DEADLINE_S) -> str:
    """Switch to the marker's version; roll back unless it commits within ``deadline_s``. The outcome."""
    state_dir = installation.state_dir
    marker = Marker.read(state_dir)
    if marker is None or marker.phase != SWITCHING:
        return "nothing to do"
    _kill_agent(installation)
    node.activate(installation.prefix, marker.to_version)
    _start_agent(installation)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        current = Marker.read(state_dir)
        if current is not None and current.phase == COMMITTED:
            Marker.path(state_dir).unlink(missing_ok=True)
            node.prune(installation.prefix)
            return f"upgraded to {marker.to_version}"
        time.sleep(0.2)
    _kill_agent(installation)
    node.activate(installation.prefix, marker.from_version)
    marker.phase = ROLLED_BACK
    marker.reason = (
        f"{marker.to_version} did not heartbeat within {deadline_s:g} s of its start: "
        f"rolled back to {marker.from_version}"
    )
    marker.write(state_dir)
    _start_agent(installation)
    return marker.reason


# --- at the agent's start ------------------------------------------------------------------------


def finish_pending_upgrade(
    state_dir: Path, client: FleetlinkClient, agent_id: str, store: AgentStore
) -> str | None:
    """Before the daemon starts: settle an upgrade this process is the outcome of (see the module doc).

    A new version that cannot heartbeat raises, so the agent exits and the switcher rolls it back.
    """
    marker = Marker.read(state_dir)
    if marker is None:
        return None
    running = fleetlink.__version__
    if marker.phase == SWITCHING and running == marker.to_version:
        client.heartbeat(agent_id, status="upgraded")
        _report(client, agent_id, "upgrade", running, marker.from_version, None)
        output = json.dumps({"from": marker.from_version, "to": running})
        store.record_finished(
            marker.execution_id,
            marker.attempt,
            ExecutionResult(
                ResultStatus.SUCCEEDED,
                finished_at=_now_ms(),
                started_at=marker.started_at,
                exit_code=0,
                output=output,
            ),
        )
        marker.phase = COMMITTED
        marker.write(state_dir)
        return f"upgraded from {marker.from_version} to {running}"
    if marker.phase == ROLLED_BACK and running == marker.from_version:
        _report(client, agent_id, "rollback", running, marker.to_version, marker.reason)
        store.record_finished(
            marker.execution_id,
            marker.attempt,
            ExecutionResult(
                ResultStatus.FAILED, finished_at=_now_ms(), started_at=marker.started_at, error=marker.reason
            ),
        )
        Marker.path(state_dir).unlink(missing_ok=True)
        return marker.reason
    return None


def _report(
    client: FleetlinkClient, agent_id: str, event: str, version: str, other: str, detail: str | None
) -> None:
    body: dict[str, Any] = {"event": event, "version": version, "from_version": other}
    if detail:
        body["detail"] = detail[:500]
    client._send("POST", f"/agents/{segment(agent_id)}/version", body=body, auth=client._signed_as())


def main_apply(prefix: Path) -> int:
    """``fleetlink agent upgrade-apply``: the switcher's entry (started by the handler)."""
    outcome = apply(Installation(prefix))
    print(f"fleetlink upgrade: {outcome}", file=sys.stderr, flush=True)
    return 0
