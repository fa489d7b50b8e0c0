"""Test helpers for the node side of tunnels: an in-memory cloud tunnel API, a sealing stand-in built
on RSA-OAEP-256 (a standard construction; production uses ``fleetlink.auth.sealing``)."""

from __future__ import annotations

import base64
import sqlite3
import threading
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from fleetlink.client.http import FleetlinkConnectionError
from fleetlink.contract.agents import HeartbeatAck
from fleetlink.contract.tunnels import DesiredState, DesiredTunnel, EventsBatch, StatusReport


def _statements(script: str) -> list[str]:
    """Split a migration script into complete SQL statements."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current)
            current = ""
    return statements


@dataclass
class RsaSealer:
    """Seals short secrets to an RSA key with OAEP-SHA256, context as the OAEP label."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def seal(self, plaintext: bytes, *, context: bytes) -> str:
        blob = self.key.public_key().encrypt(plaintext, self._padding(context))
        return "fl1.rsa-oaep-256." + base64.urlsafe_b64encode(blob).decode().rstrip("=")

    def open(self, sealed: str, *, context: bytes) -> bytes:
        prefix = "fl1.rsa-oaep-256."
        if not sealed.startswith(prefix):
            raise ValueError("not a sealed blob")
        body = sealed[len(prefix) :]
        return self.key.decrypt(
            base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)), self._padding(context)
        )

    @staticmethod
    def _padding(label: bytes) -> padding.OAEP:
        return padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label
        )


@dataclass
class FakeTunnelApi:
    """The agent routes of the tunnel API, in memory; ``reachable = False`` simulates an outage."""

    tunnels: list[DesiredTunnel] = field(default_factory=list)
    version: int = 1
    reachable: bool = True
    statuses: list[tuple[str, StatusReport]] = field(default_factory=list)
    events: list[tuple[str, EventsBatch]] = field(default_factory=list)
    fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self) -> None:
        if not self.reachable:
            raise FleetlinkConnectionError("connection refused")

    def get_desired_state(self, agent_id: str) -> DesiredState:
        with self.lock:
            self._check()
            self.fetches += 1
            return DesiredState(tunnels=list(self.tunnels), tunnels_version=self.version)

    def put_status(self, tunnel_id: str, report: StatusReport) -> None:
        with self.lock:
            self._check()
            self.statuses.append((tunnel_id, report))

    def post_events(self, tunnel_id: str, batch: EventsBatch) -> None:
        with self.lock:
            self._check()
            self.events.append((tunnel_id, batch))

    def ack(self) -> HeartbeatAck:
        """The heartbeat answer the cloud would give now (its tunnels_version)."""
        return HeartbeatAck(
            server_time=0,
            heartbeat_interval_s=30,
            pending_executions=0,
            tunnels_version=self.version,
            renewed=[],
            cancel=[],
        )

    def event_types(self, tunnel_id: str) -> list[str]:
        return [e.event_type for t, b in self.events if t == tunnel_id for e in b.events]
