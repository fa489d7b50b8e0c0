"""Crash safety against the dev stack over real HTTP: a node SIGKILLed at random moments while writing
and syncing never has a record without its outbox entry, and after a final drain the relay function
holds exactly the node's last values, with nothing lost and nothing applied twice.

The stack is `fleetlink dev`'s (:class:`~fleetlink.local.server.DevStack`: the real relay handler on
moto behind a real HTTP server), run in this process so that every conditional write the relay
made can be counted per record id. ``RELAY_CRASH_KILLS`` sets the number of kills (default 30; the
acceptance run uses 200).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from fleetlink.agent.relay.service import RelayService
from fleetlink.agent.relay.store import RecordStore
from fleetlink.client.relay import RelayClient
from fleetlink.contract.relay import QueryRequest
from fleetlink.core.entities import KeyAlg
from fleetlink.core.relay.merge import StoredRecord
from fleetlink.core.relay.ports import WriteResult
from fleetlink.local.server import DevStack
from fleetlink.store.relay import DynamoRelayRepository
from tests.integration.relay.conftest import OPERATOR_TOKEN, register_node

ROOT = Path(__file__).resolve().parents[3]
KILLS = int(os.environ.get("RELAY_CRASH_KILLS", "30"))
#: Guards against a hung child; never an assertion about speed.
START_TIMEOUT_S = 60


def unsettled_records(db: Path) -> list[str]:
    """Records with neither their outbox entry, nor an acknowledgement, nor a dead letter."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            """
            SELECT r.record_id FROM relay_records r
            WHERE r.synced_at IS NULL
              AND NOT EXISTS (SELECT 1 FROM relay_outbox o WHERE o.record_id = r.record_id)
              AND NOT EXISTS (SELECT 1 FROM relay_dead_letters d WHERE d.record_id = r.record_id)
            UNION ALL
            SELECT o.record_id FROM relay_outbox o
            WHERE NOT EXISTS (SELECT 1 FROM relay_records r WHERE r.record_id = o.record_id)
            """
        ).fetchall()
    return [row[0] for row in rows]


def test_sigkill_at_random_moments_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path, dev_stack: DevStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the relay function counting every write it applied, per record id
    applied: Counter[str] = Counter()
    put_if_newer = DynamoRelayRepository.put_if_newer

    def counted(self: DynamoRelayRepository, item: StoredRecord) -> WriteResult:
        result = put_if_newer(self, item)
        if result.applied:
            applied[item.record_id] += 1
        return result

    monkeypatch.setattr(DynamoRelayRepository, "put_if_newer", counted)
    node = register_node(dev_stack.url, OPERATOR_TOKEN, tmp_path)
    db = tmp_path / "agent.db"
    rng = random.Random(1234)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    for kill in range(KILLS):
        # Given a node writing and syncing / When it is SIGKILLed at a random moment
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.relay.crash_writer",
                str(db),
                node.url,
                str(node.key_file),
                node.agent_id,
                str(kill),
            ],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=env,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "started"
            time.sleep(rng.uniform(0.0, 0.4))  # the kill moment: a random delay after the first write
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=START_TIMEOUT_S)
        # Then every record is either queued, acknowledged or a dead letter
        assert unsettled_records(db) == []

    # When the node comes back and drains
    with (
        RecordStore(db) as store,
        RelayClient(node.url, private_key=node.key, key_alg=KeyAlg.ED25519, agent_id=node.agent_id) as client,
    ):
        worker = RelayService(store, client)
        worker.start()
        assert worker.drain(max_rounds=100)
        # a node's hlcs strictly increase, so (hlc, value) names one write of a key
        local = {r.key: (r.hlc, r.value, r.deleted) for r in store.list("crash", include_deleted=True)}
        dead = store.health().dead_letters
        held: dict[str, tuple[str, object, bool]] = {}
        cursor = None
        for _ in range(10):
            page = client.query(
                QueryRequest(collection="crash", node_id=node.agent_id, include_deleted=True, cursor=cursor)
            )
            held |= {r.key: (r.hlc, r.value, r.deleted) for r in page.records}
            cursor = page.cursor
            if cursor is None:
                break
    sync = httpx.get(
        f"{node.url}/v1/relay/nodes/{node.agent_id}", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    ).json()
    # Then the relay holds exactly the node's last record of every key, none applied twice
    lost = sum(1 for key, value in local.items() if held.get(key) != value)
    twice = [record_id for record_id, n in applied.items() if n > 1]
    print(
        f"\nrelay crash test on the dev stack: {KILLS} SIGKILLs, {len(local)} keys, lost {lost}, "
        f"applied twice {len(twice)}, dead letters {dead}, relay counts: applied {sync['applied']}, "
        f"duplicate {sync['duplicate']}, stale {sync['stale']}, retry {sync['retry']}"
    )
    assert held == local
    assert twice == []
    assert sum(applied.values()) == sync["applied"]
    assert dead == 0
