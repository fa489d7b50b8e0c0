"""The self_hosted provider's outbound SSH reverse forward, against a real OpenSSH sshd the test
starts on 127.0.0.1 (free port, temporary host key and authorized_keys)."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fleetlink.agent.db import db_path
from fleetlink.agent.tunnels.config import RelayConfig, TunnelsConfig
from fleetlink.agent.tunnels.service import TunnelsService
from fleetlink.agent.tunnels.store import TunnelStore
from fleetlink.contract.tunnels import Health
from tests.fakes.tunnels import FakeTunnelApi
from tests.integration.tunnels.targets import WAIT_S, TargetServer, free_port, wait_until
from tests.integration.tunnels.test_service import desired, drive

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(
    not os.path.exists(SSHD), reason="openssh-server is not installed (make test installs it)"
)


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class Relay:
    port: int
    client_key: Path
    known_hosts: Path
    wrong_known_hosts: Path


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Relay]:
    home = tmp_path / "relay"
    home.mkdir()
    host_key = home / "host_key"
    host_pub = keygen(host_key)
    client_key = home / "client_key"
    (home / "authorized_keys").write_text(keygen(client_key) + "\n")
    port = free_port()
    known = home / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    wrong = home / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{port} {keygen(home / 'other_key')}\n")
    config = home / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {home / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {home / 'authorized_keys'}\nUsePAM no\nStrictModes no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nAllowTcpForwarding remote\nGatewayPorts no\nLogLevel VERBOSE\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return False
        return True

    try:
        wait_until(listening)
        yield Relay(port, client_key, known, wrong)
    finally:
        process.terminate()
        process.wait(WAIT_S)


def relay_config(relay: Relay, remote_port: int, *, known_hosts: Path | None = None) -> TunnelsConfig:
    return TunnelsConfig(
        health_interval_s=0.1,
        backoff_base_s=0.05,
        backoff_max_s=0.5,
        relay=RelayConfig(
            host="127.0.0.1",
            user=getpass.getuser(),
            identity_file=relay.client_key,
            known_hosts=known_hosts or relay.known_hosts,
            port=relay.port,
            ports={"web": remote_port},
        ),
    )


def test_requests_reach_the_targets_through_the_relay(
    sshd: Relay, state_dir: Path, targets: dict[str, TargetServer]
) -> None:
    """Given a relay sshd and a self_hosted tunnel with /api → b; when the agent starts it; then the
    reverse forward is up, its public URL is the relay port, and requests through sshd reach the
    right target by prefix."""
    remote_port = free_port()
    tunnel = desired("web", targets["a"].target, {"/api": targets["b"].target})
    api = FakeTunnelApi(tunnels=[tunnel])
    service = TunnelsService(
        agent_id="agt_1",
        api=api,
        store=TunnelStore.open(db_path(state_dir)),
        state_dir=state_dir,
        config=relay_config(sshd, remote_port),
    )
    service.start()
    try:
        status = drive(
            service,
            lambda: (
                (t := service.store.tunnel(tunnel.tunnel_id))  # type: ignore[union-attr]
                and t.status.health is Health.UP
                and t.status
            ),
        )
        assert status.public_url == f"http://127.0.0.1:{remote_port}"
        assert httpx.get(f"{status.public_url}/api/x", timeout=WAIT_S).json()["server"] == "b"
        assert httpx.get(f"{status.public_url}/", timeout=WAIT_S).json()["server"] == "a"
    finally:
        service.stop()


def test_an_unknown_relay_host_key_is_refused(
    sshd: Relay, state_dir: Path, targets: dict[str, TargetServer]
) -> None:
    """Given known_hosts holding another key for the relay; then ssh refuses to connect and the tunnel
    reads down with relay_host_key."""
    tunnel = desired("web", targets["a"].target)
    api = FakeTunnelApi(tunnels=[tunnel])
    config = relay_config(sshd, free_port(), known_hosts=sshd.wrong_known_hosts)
    service = TunnelsService(
        agent_id="agt_1",
        api=api,
        store=TunnelStore.open(db_path(state_dir)),
        state_dir=state_dir,
        config=config,
    )
    service.start()
    try:
        status = drive(
            service,
            lambda: (
                (t := service.store.tunnel(tunnel.tunnel_id))  # type: ignore[union-attr]
                and t.status.error_code == "relay_host_key"
                and t.status
            ),
        )
        assert status.health is Health.DOWN
    finally:
        service.stop()
