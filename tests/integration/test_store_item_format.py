"""The stored form of the table's items: attribute names and DynamoDB types, pinned.

Each sample is written through the store (or serialized by its conversion), compared with the
literal item, and read back into the entity it stores.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fleetlink.api.deps import Deps
from fleetlink.core.agents.model import Agent, RegistrationEvent, RegistrationToken
from fleetlink.core.audit import AuditRecord, FieldChange
from fleetlink.core.entities import Hardware
from fleetlink.core.relay.ports import NodeSync, SyncTally
from fleetlink.core.releases.model import Release, ReleaseKey
from fleetlink.core.tasks.model import CreateRecord, Execution, Task, TaskTargets
from fleetlink.core.tasks.output import AppendOutput, Attempt, OutputChunk
from fleetlink.core.tunnels.model import TunnelEvent, TunnelRecord
from fleetlink.store import keys
from fleetlink.store.agents.items import AgentProfileItem, RegistrationEventItem, _event_item, _profile_item
from fleetlink.store.base import entity, table_client, table_name
from fleetlink.store.presence import AgentPresenceItem
from fleetlink.store.relay import DynamoRelayRepository
from fleetlink.store.releases import DynamoReleaseRepository
from fleetlink.store.task_output import DynamoOutputRepository, attempt_item
from fleetlink.store.tasks.items import (
    ExecutionItem,
    TaskItem,
    _execution,
    _idempotency_item,
    _task,
    _task_item,
)
from fleetlink.store.tasks.repository import DynamoTaskRepository
from fleetlink.store.tunnels import DynamoTunnelRepository

AT = 1_800_000_000_000
HARDWARE = Hardware(machine_id="m-1", hostname="edge-1", ip_address="10.0.0.2")
AUDIT = AuditRecord(
    audit_id="aud_01JAAAAAAAAAAAAAAAAAAAAAAA",
    actor="operator:ops",
    action="release.create",
    target_id="rel_1",
    at=AT,
    source_ip="10.0.0.9",
    changes={"status": FieldChange(old=None, new="uploading")},
    details={"size": 12},
)


def _stored(pk: str, sk: str) -> dict[str, Any]:
    """The item as the table holds it (DynamoDB JSON)."""
    item: dict[str, Any] = table_client().get_item(
        TableName=table_name(), Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
    )["Item"]
    return item


def test_release_key_release_and_audit_items(deps: Deps) -> None:
    # Given a release key and a release, written with their audit entries
    repository = DynamoReleaseRepository()
    key = ReleaseKey(
        public_key="PEM", key_id="k2", previous_key_id="k1", rotation_signature="c2ln", updated_at=AT
    )
    release = Release(
        version="1.2.3",
        platform="linux-amd64",
        sha256="ab" * 32,
        size=1234,
        signature="c2ln",
        key_id="k2",
        status="uploading",
        created_at=AT,
        created_by="operator:ops",
    )
    assert repository.put_key(key, None, AUDIT)
    assert repository.create(release, AUDIT.model_copy(update={"audit_id": "aud_01JBBBBBBBBBBBBBBBBBBBBBBB"}))
    # Then the table holds exactly these items
    assert _stored(keys.RELEASE_KEY_PK, keys.SINGLETON_SK) == EXPECTED_RELEASE_KEY
    assert _stored(keys.RELEASES_PK, keys.release_sk("linux-amd64", "1.2.3")) == EXPECTED_RELEASE
    assert _stored(*keys.audit_keys(AUDIT.audit_id, AUDIT.at)) == EXPECTED_AUDIT
    # And each reads back as written
    assert repository.get_key() == key
    assert repository.get("1.2.3", "linux-amd64") == release


def test_tunnel_and_tunnel_event_items(deps: Deps) -> None:
    # Given an agent's presence and a tunnel with one event, created
    AgentPresenceItem(keys.agent_pk("agt_1"), keys.AGENT_PRESENCE_SK).save()
    record = TunnelRecord(
        tunnel_id="tun_1",
        agent_id="agt_1",
        provider="cloudflare",
        name="web",
        mode="http",
        local_target="127.0.0.1:8080",
        enabled=True,
        routes=[
            {
                "route_id": "rte_01JAAAAAAAAAAAAAAAAAAAAAAA",
                "path_prefix": "/api",
                "local_target": "127.0.0.1:9000",
            }
        ],
        sealed_secret="sealed",
        created_at=AT,
        updated_at=AT,
    )
    event = TunnelEvent(
        event_id="evt_01JAAAAAAAAAAAAAAAAAAAAAAA",
        tunnel_id="tun_1",
        agent_id="agt_1",
        level="error",
        event_type="error",
        message="refused",
        data={"code": 7},
        created_at=AT,
    )
    repository = DynamoTunnelRepository(event_retention_days=30)
    repository.create(record, [event], AUDIT)
    # Then the table holds exactly these items
    assert _stored(keys.agent_pk("agt_1"), keys.tunnel_sk("tun_1")) == EXPECTED_TUNNEL
    assert _stored(keys.tunnel_pk("tun_1"), keys.tunnel_event_sk(AT, event.event_id)) == EXPECTED_TUNNEL_EVENT
    # And each reads back as written (the tunnel at its first version)
    assert repository.get("tun_1") == record.model_copy(update={"version": 1})
    assert repository.events_of("tun_1", now_ms=AT, limit=5, cursor=None).items == [event]


def test_task_execution_and_attempt_items(deps: Deps) -> None:
    # Given a task, one of its executions and an ended attempt, as the store converts them
    task = Task(
        task_id="tsk_1",
        type="shell",
        command="uptime",
        input={"a": 1},
        targets=TaskTargets(tags={"site": "north"}),
        priority=5,
        timeout_seconds=60,
        max_retries=1,
        delivery_timeout_seconds=300,
        max_concurrency=2,
        created_at=AT,
        created_by="operator:ops",
        execution_count=1,
    )
    execution = Execution(
        execution_id="exe_1",
        task_id="tsk_1",
        agent_id="agt_1",
        type="shell",
        command="uptime",
        priority=5,
        timeout_seconds=60,
        max_retries=1,
        delivery_timeout_seconds=300,
        status="succeeded",
        created_at=AT,
        updated_at=AT + 5,
        deliver_by=AT + 300_000,
        started_at=AT + 1,
        finished_at=AT + 4,
        exit_code=0,
        output="up",
        output_bytes=2,
        output_objects=[{"stream": "stdout", "size": 10, "sha256": "cd" * 32, "bytes": 20}],
        result_status="succeeded",
        result_attempt=1,
        result_digest="d1",
        version=3,
    )
    attempt = Attempt(
        execution_id="exe_1",
        attempt=1,
        status="failed",
        exit_code=2,
        stderr="boom",
        stderr_truncated=True,
        stderr_bytes=4,
        started_at=AT + 1,
        finished_at=AT + 4,
    )
    create = CreateRecord("operator:ops", "key-1", "digest", "tsk_1", ["agt_1", "agt_2"])
    # When they are serialized as the table stores them
    task_item = _task_item(task).serialize()
    execution_item = DynamoTaskRepository(retention_days=30)._execution_item(execution, version=3).serialize()
    attempt_stored = attempt_item(attempt, ttl_s=AT // 1000 + 60).serialize()
    create_stored = _idempotency_item(create, AT).serialize()
    # Then they are exactly these items
    assert task_item == EXPECTED_TASK
    assert execution_item == EXPECTED_EXECUTION
    assert attempt_stored == EXPECTED_ATTEMPT
    assert create_stored == EXPECTED_IDEMPOTENCY
    # And each reads back as written
    assert _task(TaskItem.from_raw_data(task_item)) == task
    assert _execution(ExecutionItem.from_raw_data(execution_item)) == execution
    attempt_item(attempt, ttl_s=AT // 1000 + 60).save()
    _idempotency_item(create, AT).save()
    assert DynamoTaskRepository(retention_days=30).find_create("operator:ops", "key-1") == create
    assert DynamoOutputRepository().attempts("exe_1", now_ms=AT) == [attempt]


def test_agent_profile_registration_event_and_token_items(deps: Deps) -> None:
    # Given an agent, its registration event and a registration token
    agent = Agent(
        agent_id="agt_1",
        fingerprint="fpr",
        name="edge-1",
        key_alg="ed25519",
        public_key="PEM",
        hardware=HARDWARE,
        tags={"site": "north"},
        capabilities=["tunnels"],
        agent_version="1.2.3",
        registered_at=AT,
        updated_at=AT,
        version=4,
    )
    event = RegistrationEvent(
        event_id="reg_1",
        agent_id="agt_1",
        event="register",
        success=True,
        similarity_score=90,
        token_id="tok_1",
        hardware=HARDWARE,
        at=AT,
        resembles={"agent_id": "agt_0", "score": 90, "same_fingerprint": False},
    )
    token = RegistrationToken(
        token_id="tok_1",
        secret_hash="hash",
        tags={"site": "north"},
        max_uses=3,
        expires_at=AT + 3_600_000,
        created_at=AT,
        created_by="operator:ops",
    )
    # When they are stored
    profile = _profile_item(agent).serialize()
    registration = _event_item(event).serialize()
    deps.registrations.create_token(token, AUDIT)
    # Then they are exactly these items
    assert profile == EXPECTED_PROFILE
    assert registration == EXPECTED_REGISTRATION_EVENT
    assert _stored(keys.token_pk("tok_1"), keys.SINGLETON_SK) == EXPECTED_TOKEN
    # And each reads back as written
    assert entity(Agent, AgentProfileItem.from_raw_data(profile)) == agent
    assert entity(RegistrationEvent, RegistrationEventItem.from_raw_data(registration)) == event
    assert deps.registrations.get_token("tok_1") == token


def test_output_chunk_and_relay_sync_items(deps: Deps) -> None:
    # Given a chunk of live output appended and a relay sync recorded
    command = AppendOutput(attempt=1, seq=1, parts=[{"stream": "stdout", "data": "hello"}])
    assert DynamoOutputRepository().append("exe_1", command, now_ms=AT, ttl_s=AT // 1000 + 60)
    tally = SyncTally(
        applied=2, duplicate=1, live_delta=2, max_applied_hlc="0001", collections=frozenset({"notes"})
    )
    DynamoRelayRepository().record_sync("agt_1", tally, now_ms=AT)
    # Then the table holds exactly these items
    chunk = _stored(keys.execution_pk("exe_1"), keys.output_chunk_sk(1, 1))
    assert chunk == EXPECTED_OUTPUT_CHUNK
    assert _stored(keys.agent_pk("agt_1"), keys.RELAY_SYNC_SK) == EXPECTED_RELAY_SYNC
    # And each reads back as written
    assert DynamoOutputRepository().chunks("exe_1", 1, 0, 5, now_ms=AT) == [
        OutputChunk(attempt=1, seq=1, parts=command.parts, received_at=AT)
    ]
    assert DynamoRelayRepository().sync_state("agt_1") == NodeSync(
        node_id="agt_1",
        records=2,
        tombstones=0,
        applied=2,
        duplicate=1,
        stale=0,
        rejected=0,
        retry=0,
        last_applied_hlc="0001",
        last_applied_at=AT,
        last_request_at=AT,
    )


# --- the stored items (DynamoDB JSON) ---

EXPECTED_RELEASE_KEY = {
    "key_id": {"S": "k2"},
    "pk": {"S": "RELEASEKEY"},
    "previous_key_id": {"S": "k1"},
    "public_key": {"S": "PEM"},
    "rotation_signature": {"S": "c2ln"},
    "sk": {"S": "#"},
    "type": {"S": "release_key"},
    "updated_at": {"N": "1800000000000"},
}

EXPECTED_RELEASE = {
    "created_at": {"N": "1800000000000"},
    "created_by": {"S": "operator:ops"},
    "key_id": {"S": "k2"},
    "pk": {"S": "RELEASES"},
    "platform": {"S": "linux-amd64"},
    "sha256": {"S": "abababababababababababababababababababababababababababababababab"},
    "signature": {"S": "c2ln"},
    "size": {"N": "1234"},
    "sk": {"S": "linux-amd64#1.2.3"},
    "status": {"S": "uploading"},
    "type": {"S": "release"},
    "version": {"S": "1.2.3"},
}

EXPECTED_AUDIT = {
    "action": {"S": "release.create"},
    "actor": {"S": "operator:ops"},
    "at": {"N": "1800000000000"},
    "audit_id": {"S": "aud_01JAAAAAAAAAAAAAAAAAAAAAAA"},
    "changes": {"M": {"status": {"M": {"new": {"S": "uploading"}, "old": {"NULL": True}}}}},
    "details": {"M": {"size": {"N": "12"}}},
    "gsi1pk": {"S": "AUDITOF#rel_1"},
    "gsi1sk": {"S": "aud_01JAAAAAAAAAAAAAAAAAAAAAAA"},
    "pk": {"S": "AUDIT#2027-01-15#3"},
    "sk": {"S": "aud_01JAAAAAAAAAAAAAAAAAAAAAAA"},
    "source_ip": {"S": "10.0.0.9"},
    "success": {"BOOL": True},
    "target_id": {"S": "rel_1"},
    "ttl": {"N": "1831536000"},
    "type": {"S": "audit"},
    "user_agent": {"S": ""},
}

EXPECTED_TUNNEL = {
    "agent_id": {"S": "agt_1"},
    "created_at": {"N": "1800000000000"},
    "enabled": {"BOOL": True},
    "gsi1pk": {"S": "TUNNELS#2"},
    "gsi1sk": {"S": "tun_1"},
    "health": {"S": "unknown"},
    "local_target": {"S": "127.0.0.1:8080"},
    "mode": {"S": "http"},
    "name": {"S": "web"},
    "pk": {"S": "AGENT#agt_1"},
    "provider": {"S": "cloudflare"},
    "routes": {
        "S": '[{"path_prefix": "/api", "local_target": "127.0.0.1:9000", "priority": 0, "enabled": true, '
        '"route_id": "rte_01JAAAAAAAAAAAAAAAAAAAAAAA"}]'
    },
    "sealed_secret": {"S": "sealed"},
    "sk": {"S": "TUNNEL#tun_1"},
    "tunnel_id": {"S": "tun_1"},
    "type": {"S": "tunnel"},
    "updated_at": {"N": "1800000000000"},
    "version": {"N": "1"},
}

EXPECTED_TUNNEL_EVENT = {
    "agent_id": {"S": "agt_1"},
    "created_at": {"N": "1800000000000"},
    "data": {"S": '{"code": 7}'},
    "event_id": {"S": "evt_01JAAAAAAAAAAAAAAAAAAAAAAA"},
    "event_type": {"S": "error"},
    "gsi2pk": {"S": "TUNERRORS#2027-01-15#2"},
    "gsi2sk": {"S": "1800000000000#evt_01JAAAAAAAAAAAAAAAAAAAAAAA"},
    "gsi3pk": {"S": "TUNEVENTS#2027-01-15#2"},
    "gsi3sk": {"S": "1800000000000#evt_01JAAAAAAAAAAAAAAAAAAAAAAA"},
    "level": {"S": "error"},
    "message": {"S": "refused"},
    "pk": {"S": "TUNNEL#tun_1"},
    "sk": {"S": "EVT#1800000000000#evt_01JAAAAAAAAAAAAAAAAAAAAAAA"},
    "ttl": {"N": "1802592000"},
    "tunnel_id": {"S": "tun_1"},
    "type": {"S": "tunnel_event"},
}

EXPECTED_TASK = {
    "command": {"S": "uptime"},
    "created_at": {"N": "1800000000000"},
    "created_by": {"S": "operator:ops"},
    "delivery_timeout_seconds": {"N": "300"},
    "execution_count": {"N": "1"},
    "gsi1pk": {"S": "TASKS#2027-01"},
    "gsi1sk": {"S": "tsk_1"},
    "input": {"S": '{"a": 1}'},
    "max_concurrency": {"N": "2"},
    "max_retries": {"N": "1"},
    "pk": {"S": "TASK#tsk_1"},
    "priority": {"N": "5"},
    "sk": {"S": "#"},
    "state": {"S": "active"},
    "targets": {"S": '{"agent_ids": [], "tags": {"site": "north"}}'},
    "task_id": {"S": "tsk_1"},
    "task_type": {"S": "shell"},
    "timeout_seconds": {"N": "60"},
    "type": {"S": "task"},
}

EXPECTED_EXECUTION = {
    "agent_id": {"S": "agt_1"},
    "attempt": {"N": "1"},
    "cancel_requested": {"BOOL": False},
    "command": {"S": "uptime"},
    "created_at": {"N": "1800000000000"},
    "deliver_by": {"N": "1800000300000"},
    "delivery_timeout_seconds": {"N": "300"},
    "execution_id": {"S": "exe_1"},
    "exit_code": {"N": "0"},
    "finished_at": {"N": "1800000000004"},
    "gsi3pk": {"S": "TASKEXE#tsk_1#3"},
    "gsi3sk": {"S": "agt_1#exe_1"},
    "gsi5pk": {"S": "AGENTEXE#agt_1"},
    "gsi5sk": {"S": "exe_1"},
    "max_retries": {"N": "1"},
    "output": {"S": "up"},
    "output_bytes": {"N": "2"},
    "output_objects": {
        "S": '[{"stream": "stdout", "size": 10, "sha256": '
        '"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd", "bytes": 20}]'
    },
    "output_truncated": {"BOOL": False},
    "pk": {"S": "EXE#exe_1"},
    "priority": {"N": "5"},
    "result_attempt": {"N": "1"},
    "result_digest": {"S": "d1"},
    "result_status": {"S": "succeeded"},
    "sk": {"S": "#"},
    "started_at": {"N": "1800000000001"},
    "status": {"S": "succeeded"},
    "stderr_truncated": {"BOOL": False},
    "task_id": {"S": "tsk_1"},
    "task_type": {"S": "shell"},
    "timeout_seconds": {"N": "60"},
    "ttl": {"N": "1802592000"},
    "type": {"S": "execution"},
    "updated_at": {"N": "1800000000005"},
    "version": {"N": "3"},
}

EXPECTED_ATTEMPT = {
    "attempt": {"N": "1"},
    "execution_id": {"S": "exe_1"},
    "exit_code": {"N": "2"},
    "finished_at": {"N": "1800000000004"},
    "output_truncated": {"N": "0"},
    "pk": {"S": "EXE#exe_1"},
    "sk": {"S": "ATT#0001"},
    "started_at": {"N": "1800000000001"},
    "status": {"S": "failed"},
    "stderr": {"S": "boom"},
    "stderr_bytes": {"N": "4"},
    "stderr_truncated": {"N": "1"},
    "ttl": {"N": "1800000060"},
    "type": {"S": "execution_attempt"},
}

EXPECTED_PROFILE = {
    "agent_id": {"S": "agt_1"},
    "agent_version": {"S": "1.2.3"},
    "capabilities": {"L": [{"S": "tunnels"}]},
    "fingerprint": {"S": "fpr"},
    "gsi1pk": {"S": "AGENTS#2"},
    "gsi1sk": {"S": "agt_1"},
    "hardware": {
        "M": {
            "arch": {"S": ""},
            "hostname": {"S": "edge-1"},
            "ip_address": {"S": "10.0.0.2"},
            "mac_address": {"S": ""},
            "machine_id": {"S": "m-1"},
            "os": {"S": ""},
        }
    },
    "key_alg": {"S": "ed25519"},
    "name": {"S": "edge-1"},
    "pk": {"S": "AGENT#agt_1"},
    "public_key": {"S": "PEM"},
    "registered_at": {"N": "1800000000000"},
    "requested_tags": {"M": {}},
    "sk": {"S": "STATE#PROFILE"},
    "state": {"S": "active"},
    "tags": {"M": {"site": {"S": "north"}}},
    "type": {"S": "agent"},
    "updated_at": {"N": "1800000000000"},
    "version": {"N": "4"},
}

EXPECTED_REGISTRATION_EVENT = {
    "agent_id": {"S": "agt_1"},
    "at": {"N": "1800000000000"},
    "event": {"S": "register"},
    "event_id": {"S": "reg_1"},
    "hardware": {
        "M": {
            "arch": {"S": ""},
            "hostname": {"S": "edge-1"},
            "ip_address": {"S": "10.0.0.2"},
            "mac_address": {"S": ""},
            "machine_id": {"S": "m-1"},
            "os": {"S": ""},
        }
    },
    "key_changed": {"BOOL": False},
    "pk": {"S": "AGENT#agt_1"},
    "resembles": {
        "M": {"agent_id": {"S": "agt_0"}, "same_fingerprint": {"BOOL": False}, "score": {"N": "90"}}
    },
    "similarity_score": {"N": "90"},
    "sk": {"S": "REG#reg_1"},
    "success": {"BOOL": True},
    "token_id": {"S": "tok_1"},
    "type": {"S": "registration"},
}

EXPECTED_TOKEN = {
    "created_at": {"N": "1800000000000"},
    "created_by": {"S": "operator:ops"},
    "expires_at": {"N": "1800003600000"},
    "gsi1pk": {"S": "TOKENS"},
    "gsi1sk": {"S": "tok_1"},
    "max_uses": {"N": "3"},
    "pk": {"S": "TOKEN#tok_1"},
    "purpose": {"S": "registration"},
    "secret_hash": {"S": "hash"},
    "sk": {"S": "#"},
    "tags": {"M": {"site": {"S": "north"}}},
    "token_id": {"S": "tok_1"},
    "ttl": {"N": "1800608400"},
    "type": {"S": "registration_token"},
    "uses": {"N": "0"},
}

EXPECTED_OUTPUT_CHUNK = {
    "attempt": {"N": "1"},
    "digest": {"S": "05b12c5677919e9f5c10a807e7591e8f"},
    "parts": {"S": '[{"stream": "stdout", "data": "hello"}]'},
    "pk": {"S": "EXE#exe_1"},
    "received_at": {"N": "1800000000000"},
    "seq": {"N": "1"},
    "sk": {"S": "OUT#0001#00000001"},
    "ttl": {"N": "1800000060"},
    "type": {"S": "output_chunk"},
}

EXPECTED_RELAY_SYNC = {
    "applied": {"N": "2"},
    "collections": {"SS": ["notes"]},
    "duplicate": {"N": "1"},
    "last_applied_at": {"N": "1800000000000"},
    "last_applied_hlc": {"S": "0001"},
    "last_request_at": {"N": "1800000000000"},
    "node_id": {"S": "agt_1"},
    "pk": {"S": "AGENT#agt_1"},
    "records": {"N": "2"},
    "rejected": {"N": "0"},
    "retry": {"N": "0"},
    "sk": {"S": "RELAY#SYNC"},
    "stale": {"N": "0"},
    "tombstones": {"N": "0"},
    "type": {"S": "relay_sync"},
}

EXPECTED_IDEMPOTENCY = {
    "pk": {"S": "IDEM#" + hashlib.sha256(b"operator:ops\nkey-1").hexdigest()},
    "sk": {"S": "#"},
    "type": {"S": "idempotency"},
    "task_id": {"S": "tsk_1"},
    "request_digest": {"S": "digest"},
    "agent_ids": {"L": [{"S": "agt_1"}, {"S": "agt_2"}]},
    "ttl": {"N": "1800086400"},
}
