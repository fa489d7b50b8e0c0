"""Rolling agents out and retiring them, on a real `fleetlink dev` over real HTTP: the artifact
built, signed and published; the served install script run into a temp prefix (no home directory
touched); the agent registers and heartbeats; a tampered artifact is refused before anything is
replaced; `agents rm` hides an agent; `agent uninstall` leaves no service or files; a purge
removes what the agent left.

Prints the figures the rollout is judged by: artifact size and install time on this machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentdist.build import build

from fleetlink.release import manifest, node
from tests.e2e.conftest import DevProcess, start_dev_process

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("rollout")]

OPERATOR_TOKEN = "rollout-operator-token"
#: Guards against a hung step; never an assertion about speed.
WAIT_S = 90.0
VERSION = "1.0.0"
NEXT = "1.0.1"
BROKEN = "1.0.2"
#: How long a new version has to heartbeat before it is rolled back (the default is 60 s).
HEALTH_DEADLINE_S = "20"


def _fails_to_start(package: Path) -> None:
    """A release whose command line exits at once: the agent never starts."""
    (package / "cli" / "__main__.py").write_text('raise SystemExit("this release fails to start")\n')


@dataclass
class Fleet:
    dev: DevProcess
    root: Path
    key: Path
    artifacts: dict[str, Path]

    @property
    def url(self) -> str:
        return self.dev.url

    def env(self, **extra: str) -> dict[str, str]:
        """A bare environment: no home the test cares about, the operator's URL and token."""
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root / "home"),
            "FLEETLINK_URL": self.url,
            "FLEETLINK_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "FLEETLINK_UPGRADE_HEALTH_DEADLINE_S": HEALTH_DEADLINE_S,
            **extra,
        }

    def fleetlink(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        """The operator's `fleetlink` (this checkout's)."""
        done = subprocess.run(
            [sys.executable, "-m", "fleetlink.cli", *args],
            capture_output=True,
            text=True,
            env=self.env(PYTHONPATH=str(Path(__file__).parents[2] / "src")),
            timeout=WAIT_S,
            check=False,
        )
        assert done.returncode == expect, (
            f"fleetlink {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
        )
        return done

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        return httpx.request(method, f"{self.url}/v1{path}", headers=headers, timeout=30, **kwargs)

    def token(self, *args: str) -> str:
        return self.fleetlink("tokens", "create", "--max-uses", "5", *args).stdout.strip()

    def install(self, prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """`curl -fsSL <url>/v1/agent/install.sh | sh -s -- ARGS`, the script fetched over HTTP."""
        script = httpx.get(f"{self.url}/v1/agent/install.sh", timeout=30)
        assert script.status_code == 200, script.text
        return subprocess.run(
            ["sh", "-s", "--", "--prefix", str(prefix), *args],
            input=script.text,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=300,
            check=False,
        )


def _agent(fleet: Fleet, agent_id: str) -> dict[str, Any]:
    reply = fleet.api("GET", f"/agents/{agent_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def _wait_for(what: str, check: Any) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.5)  # polling while waiting, not an assertion about speed


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A dev stack, a release key, and this platform's artifact built and published."""
    root = tmp_path_factory.mktemp("rollout")
    (root / "home").mkdir()
    started = time.perf_counter()
    (artifact,) = build(VERSION, (manifest.this_platform(),), root / "dist")
    print(
        f"\nartifact {artifact.name}: {artifact.stat().st_size / 1e6:.1f} MB, "
        f"built in {time.perf_counter() - started:.1f} s"
    )
    (following,) = build(NEXT, (manifest.this_platform(),), root / "dist")
    (broken,) = build(BROKEN, (manifest.this_platform(),), root / "dist", patch=_fails_to_start)
    dev = start_dev_process(OPERATOR_TOKEN, options=("--ephemeral", "--heartbeat-interval", "2"))
    fleet = Fleet(dev, root, root / "release-key.pem", {VERSION: artifact, NEXT: following, BROKEN: broken})
    try:
        fleet.fleetlink("release", "keygen", "--out", str(fleet.key))
        fleet.fleetlink(
            "release", "publish", "--key", str(fleet.key), str(artifact), str(following), str(broken)
        )
        yield fleet
    finally:
        dev.interrupt()


def test_install_from_the_served_script_registers_heartbeats_and_is_safe_to_re_run(fleet: Fleet) -> None:
    # Given a registration token and an empty home
    token = fleet.token("--tag", "ring=canary")
    prefix = fleet.root / "node-a"
    # When the served script installs the agent into a temp prefix
    started = time.perf_counter()
    done = fleet.install(prefix, "--token", token, "--version", VERSION)
    print(f"\ninstall (download, verify, install, register, start): {time.perf_counter() - started:.1f} s")
    # Then it registers, runs (the documented fallback: no systemd here) and heartbeats, at that version
    assert done.returncode == 0, done.stdout + done.stderr
    agent_id = done.stdout.strip().splitlines()[-1]
    assert "systemd is not running here: started detached" in done.stderr
    agent = _wait_for("a heartbeat", lambda: (a := _agent(fleet, agent_id))["liveness"] == "online" and a)
    assert agent["agent_version"] == VERSION
    assert node.current_version(prefix) == VERSION
    assert list((fleet.root / "home").iterdir()) == []
    # When it runs again with the same token
    again = fleet.install(prefix, "--token", token, "--version", VERSION)
    # Then nothing changes: the same agent, the same version, still one running
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stderr
    listed = fleet.api("GET", "/agents", params={"tag": "ring:canary"}).json()["items"]
    assert [item["agent_id"] for item in listed] == [agent_id]
    # When the agent uninstalls itself
    launcher = prefix / "bin" / "fleetlink"
    pid = int((prefix / "run" / "agent.pid").read_text())
    gone = subprocess.run(
        [str(launcher), "agent", "uninstall"],
        capture_output=True,
        text=True,
        env=fleet.env(),
        timeout=WAIT_S,
        check=False,
    )
    # Then it deregistered (hidden, revoked), its process is gone and no file is left
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not prefix.exists()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    assert agent_id not in {item["agent_id"] for item in fleet.api("GET", "/agents").json()["items"]}
    deleted = fleet.fleetlink("agents", "ls", "--deleted").stdout
    assert agent_id in deleted
    assert list((fleet.root / "home").iterdir()) == []
    # When an operator purges it, Then nothing of it is left to read
    fleet.fleetlink("agents", "purge", agent_id)
    assert fleet.api("GET", f"/agents/{agent_id}").status_code == 404
    assert agent_id not in fleet.fleetlink("agents", "ls", "--deleted").stdout


def test_a_tampered_artifact_is_refused_before_anything_is_installed(fleet: Fleet) -> None:
    # Given a release whose signature covers other bytes than those in the bucket (same size)
    artifact = fleet.artifacts[VERSION]
    tampered_version = "1.0.0.1"
    from fleetlink.release import signing

    key = signing.load_private(fleet.key)
    signed = signing.sign_artifact(key, tampered_version, manifest.this_platform(), artifact)
    body = {k: getattr(signed, k) for k in ("version", "platform", "sha256", "size", "signature")}
    upload = fleet.api("POST", "/releases", json=body)
    assert upload.status_code == 201, upload.text
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    put = httpx.put(
        upload.json()["upload_url"], content=bytes(data), headers=upload.json()["upload_headers"], timeout=120
    )
    assert put.status_code == 200, put.text
    completed = fleet.api("POST", f"/releases/{tampered_version}/{manifest.this_platform()}/complete")
    assert completed.status_code == 200
    # When a node installs that version
    prefix = fleet.root / "node-t"
    done = fleet.install(prefix, "--token", fleet.token(), "--version", tampered_version)
    # Then it is refused with a clear error, and no version was installed or activated
    assert done.returncode == 1
    assert "tampered" in done.stderr
    assert not (prefix / "versions").exists() or not any((prefix / "versions").iterdir())
    assert not (prefix / "current").exists()


def test_an_unsigned_or_wrongly_signed_release_is_refused_by_the_api(fleet: Fleet) -> None:
    # Given a manifest signed by another key
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fleetlink.release import signing

    signed = signing.sign_artifact(
        Ed25519PrivateKey.generate(), "1.0.9", manifest.this_platform(), fleet.artifacts[VERSION]
    )
    body = {k: getattr(signed, k) for k in ("version", "platform", "sha256", "size", "signature")}
    # When it is announced, Then it is refused (nodes would refuse it anyway)
    reply = fleet.api("POST", "/releases", json=body)
    assert reply.status_code == 400
    assert reply.json()["type"].endswith("release-signature-invalid")
    # And a missing version is a 404 for a node
    token = fleet.token()
    missing = httpx.get(
        f"{fleet.url}/v1/agent/releases/9.9.9",
        params={"platform": manifest.this_platform()},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert missing.status_code == 404


def test_agents_rm_hides_an_agent_until_restored(fleet: Fleet, tmp_path: Path) -> None:
    # Given an agent registered with the command line
    state = tmp_path / "state"
    token = fleet.token("--tag", "ring=rm")
    agent_id = fleet.fleetlink(
        "agent", "register", "--token", token, "--state-dir", str(state), "--name", "rm-me"
    ).stdout.strip()
    # When an operator removes it by name
    fleet.fleetlink("agents", "rm", "rm-me")
    # Then it is gone from the list (also by tag), listed among deleted, and its signed calls fail
    assert agent_id not in fleet.fleetlink("agents", "ls").stdout
    assert agent_id not in fleet.fleetlink("agents", "ls", "--tag", "ring=rm").stdout
    assert agent_id in fleet.fleetlink("agents", "ls", "--deleted").stdout
    fleet.fleetlink("agent", "heartbeat", "--state-dir", str(state), expect=1)
    # When it is restored, Then it is listed and heartbeats again
    fleet.fleetlink("agents", "restore", agent_id)
    assert agent_id in fleet.fleetlink("agents", "ls", "--tag", "ring=rm").stdout
    fleet.fleetlink("agent", "heartbeat", "--state-dir", str(state))


def _history(fleet: Fleet, agent_id: str) -> list[tuple[str, str]]:
    return [(e["event"], e.get("reason") or "") for e in _agent(fleet, agent_id)["registration_history"]]


def test_upgrade_a_ring_then_a_release_that_fails_to_start_rolls_back(fleet: Fleet) -> None:
    # Given an agent installed at VERSION in ring "up"
    prefix = fleet.root / "node-u"
    done = fleet.install(prefix, "--token", fleet.token("--tag", "ring=up"), "--version", VERSION)
    assert done.returncode == 0, done.stdout + done.stderr
    agent_id = done.stdout.strip().splitlines()[-1]
    try:
        _wait_for("a heartbeat", lambda: _agent(fleet, agent_id)["liveness"] == "online")
        # When the operator upgrades the ring to NEXT
        started = time.perf_counter()
        upgrade = fleet.fleetlink(
            "agents",
            "upgrade",
            "--to",
            NEXT,
            "--target",
            "tag:ring=up",
            "--max-concurrency",
            "10%",
            "--max-errors",
            "1",
        )
        # Then the agent runs NEXT once its first heartbeat under NEXT is in (the task ends only then)
        elapsed = time.perf_counter() - started
        print(
            f"\nupgrade {VERSION} -> {NEXT}, "
            f"operator command to the new version's first heartbeat: {elapsed:.1f} s"
        )
        assert "1 of 1 upgraded" in upgrade.stdout
        agent = _agent(fleet, agent_id)
        assert agent["agent_version"] == NEXT
        assert (node.current_version(prefix), node.previous_version(prefix)) == (NEXT, VERSION)
        assert ("upgrade", f"{VERSION} -> {NEXT}") in _history(fleet, agent_id)
        # When the ring is upgraded to a release that fails to start
        failed = fleet.fleetlink("agents", "upgrade", "--to", BROKEN, "--target", "tag:ring=up", expect=1)
        # Then the agent rolled back to NEXT by itself, reports it, and the failure is in its history
        assert "0 of 1 upgraded" in failed.stdout
        assert "did not heartbeat" in failed.stderr
        assert node.current_version(prefix) == NEXT
        assert any(event == "rollback" and BROKEN in reason for event, reason in _history(fleet, agent_id))
        assert _agent(fleet, agent_id)["agent_version"] == NEXT
        seen = _agent(fleet, agent_id)["last_seen_at"]
        _wait_for("a heartbeat after the rollback", lambda: _agent(fleet, agent_id)["last_seen_at"] > seen)
        # And an upgrade to a version nobody published is refused before any task is sent
        missing = fleet.fleetlink("agents", "upgrade", "--to", "9.9.9", "--target", "tag:ring=up", expect=1)
        assert "no published release 9.9.9" in missing.stderr
    finally:
        subprocess.run(
            [str(prefix / "bin" / "fleetlink"), "agent", "uninstall", "--force"],
            env=fleet.env(),
            check=False,
            timeout=WAIT_S,
        )
