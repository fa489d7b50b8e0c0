"""Every operator write leaves exactly one audit entry, and a write that changes nothing leaves none.

The routes come from the function registry (every operator route that is not a GET and not declared
reads-only, ``fleetlink.api.roles``), so a new write route fails here until it is driven below and
audited. Each is called once through the real handlers, and the log must then hold exactly one new
entry, the route's own action, marked succeeded, naming who and from where.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetlink.api.deps import Deps, build_deps, set_deps
from fleetlink.api.document import route_table
from fleetlink.api.roles import RouteKey, route_roles, write_routes
from fleetlink.core.clock import FixedClock
from fleetlink.core.releases.service import object_key
from fleetlink.local.routing import RouteTable
from fleetlink.release import signing
from tests.support import OPERATOR_TOKEN, Api, Machine, Reply

BUCKET = "fleetlink-audit-test-releases"
USER_AGENT = "audit-test/1"
TUNNEL = {"provider": "self_hosted", "name": "web", "mode": "http", "local_target": "127.0.0.1:8080"}
VERSION, PLATFORM = "1.2.3", "linux-x86_64"


@pytest.fixture
def deps(deps: Deps, clock: FixedClock) -> Iterator[Deps]:
    """The shared deps with a releases bucket (moto S3)."""
    settings = replace(deps.settings, releases_bucket=BUCKET)
    boto3.client("s3", region_name=settings.region).create_bucket(Bucket=BUCKET)
    built = build_deps(settings, clock=clock)
    set_deps(built)
    yield built
    set_deps(deps)


def operator_writes() -> set[RouteKey]:
    """Every operator route that may change something, from the registry's routes."""
    return set(route_roles()) & write_routes()


class AuditedWrites:
    """Calls operator writes and checks that each left exactly its one entry."""

    def __init__(self, api: Api) -> None:
        self.api = api
        #: Reads start here: the whole retention would be a year of day partitions a read.
        self.since = api.clock.now_ms() - 60_000
        self.table = RouteTable(route_table())
        self.driven: set[RouteKey] = set()
        self.seen = {entry["audit_id"] for entry in self.entries()}

    def entries(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor = None
        for _ in range(100):
            query = f"limit=100&since={self.since}" + (f"&cursor={cursor}" if cursor else "")
            page = self.api.operator("operator", "GET", "/v1/audit", query=query).json
            found += page["items"]
            if (cursor := page["cursor"]) is None:
                return found
        raise AssertionError("the audit cursor never ended")

    def new_entries(self) -> list[dict[str, Any]]:
        fresh = [entry for entry in self.entries() if entry["audit_id"] not in self.seen]
        self.seen |= {entry["audit_id"] for entry in fresh}
        return fresh

    def write(self, function: str, method: str, path: str, action: str, body: Any = None) -> Reply:
        headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}", "User-Agent": USER_AGENT}
        reply = self.api.call(function, method, path, body=body, headers=headers)
        assert reply.status < 300, f"{method} {path}: {reply.status} {reply.body}"
        matched = self.table.match(method, path)
        assert matched is not None
        self.driven.add((method, matched.route.template))
        (entry,) = self.new_entries()
        assert (entry["action"], entry["success"], entry["actor"]) == (action, True, "admin"), entry
        assert (entry["user_agent"], bool(entry["source_ip"])) == (USER_AGENT, True)
        return reply

    def no_op(self, function: str, method: str, path: str, body: Any = None) -> None:
        """A resend that changes nothing: answered, and no entry."""
        assert self.api.operator(function, method, path, body).status < 300
        assert self.new_entries() == []


def test_every_operator_write_route_leaves_exactly_one_audit_entry(api: Api, tmp_path: Path) -> None:
    # Given a fresh log and the registry's operator write routes
    log = AuditedWrites(api)
    key, next_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    artifact = tmp_path / "agent.tar.gz"
    artifact.write_bytes(b"agent bytes" * 100)
    # When an operator calls each write once (tokens, agents, tasks, tunnels, policies, releases,
    # decommissioning), Then each leaves its one entry
    token = log.write(
        "registration", "POST", "/v1/registration-tokens", "registration_token.create", {"max_uses": 3}
    )
    kept, gone = Machine("kept"), Machine("gone")
    for machine in (kept, gone):
        assert api.register(machine, token.json["token"]).status == 201
    agent = f"/v1/agents/{kept.agent_id}"
    log.write("operator", "PUT", f"{agent}/tags", "agent.tags.replace", {"tags": {"env": "a"}})
    log.write("registration", "POST", f"{agent}/recovery-token", "recovery_token.create")
    task = {"type": "shell", "command": "true", "targets": {"agent_ids": [kept.agent_id]}}
    task_id = log.write("tasks", "POST", "/v1/tasks", "task.create", task).json["task_id"]
    log.write("tasks", "POST", f"/v1/tasks/{task_id}/cancel", "task.cancel")
    tunnel = log.write("tunnels", "POST", f"{agent}/tunnels", "tunnel.create", TUNNEL).json["tunnel_id"]
    log.write("tunnels", "PATCH", f"/v1/tunnels/{tunnel}", "tunnel.patch", {"enabled": False})
    log.write("tunnels", "DELETE", f"/v1/tunnels/{tunnel}", "tunnel.delete")
    log.write("relay", "PUT", "/v1/relay/collections/inv", "collection.readers.set", {"readers": "fleet"})
    first = {"public_key": signing.public_pem(key.public_key())}
    log.write("releases", "PUT", "/v1/releases/key", "release_key.set", first)
    rotated = {
        "public_key": signing.public_pem(next_key.public_key()),
        "rotation_signature": signing.sign_rotation(key, next_key.public_key()),
    }
    log.write("releases", "PUT", "/v1/releases/key", "release_key.rotate", rotated)
    signed = signing.sign_artifact(next_key, VERSION, PLATFORM, artifact)
    manifest = {k: getattr(signed, k) for k in ("version", "platform", "sha256", "size", "signature")}
    log.write("releases", "POST", "/v1/releases", "release.announce", manifest)
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=object_key(VERSION, PLATFORM), Body=artifact.read_bytes()
    )
    publish = f"/v1/releases/{VERSION}/{PLATFORM}/complete"
    log.write("releases", "POST", publish, "release.publish")
    log.write("operator", "POST", f"/v1/agents/{gone.agent_id}/revoke", "agent.revoke")
    log.write("registration", "DELETE", f"/v1/registration-tokens/{token.json['token_id']}", "token.revoke")
    log.write("operator", "DELETE", agent, "agent.delete")
    log.write("operator", "POST", f"{agent}/restore", "agent.restore")
    log.write("operator", "DELETE", agent, "agent.delete")
    purged = log.write("operator", "POST", f"{agent}/purge", "agent.purge")
    # And resends that change nothing leave no entry
    log.no_op("releases", "PUT", "/v1/releases/key", {"public_key": rotated["public_key"]})
    log.no_op("releases", "POST", publish)
    # Then every operator write route of the registry was driven (a new one must be added above)
    assert log.driven == operator_writes(), sorted(operator_writes() - log.driven)
    # And the release entries say old -> new with public material only: no signature
    entries = log.entries()
    text = json.dumps(entries)
    assert signed.signature not in text
    assert rotated["rotation_signature"] not in text
    by_action = {entry["action"]: entry for entry in entries}
    assert by_action["release.publish"]["changes"]["status"] == {"old": "uploading", "new": "published"}
    assert by_action["release.publish"]["target_id"] == f"release/{VERSION}/{PLATFORM}"
    assert by_action["release_key.rotate"]["changes"]["key_id"] == {
        "old": signing.key_id(key.public_key()),
        "new": signing.key_id(next_key.public_key()),
    }
    assert by_action["agent.purge"]["details"]["purged_items"] == purged.json["purged_items"] > 0
