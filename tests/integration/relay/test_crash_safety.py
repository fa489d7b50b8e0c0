"""Crash safety: a node SIGKILLed at random moments while writing and syncing never has a record
without its outbox entry, and after a final drain the cloud holds exactly the node's last values,
with nothing lost and nothing applied twice.

``RELAY_CRASH_KILLS`` sets the number of kills (default 30; the acceptance run uses 200).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from fleetlink.agent.relay.client import RelayClient
from fleetlink.agent.relay.service import RelayService
from fleetlink.agent.relay.store import RecordStore
from fleetlink.auth.keys import PrivateKey
from fleetlink.core.entities import KeyAlg
from tests.fakes.relay_http import RelayHttpServer
from tests.integration.relay.conftest import NODE

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
    tmp_path: Path, key_file: Path, node_key: PrivateKey, relay_server: RelayHttpServer
) -> None:
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
                relay_server.url,
                str(key_file),
                NODE,
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
            time.sleep(rng.uniform(0.0, 0.25))  # the kill moment: a random delay after the first write
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=START_TIMEOUT_S)
        # Then every record is either queued, acknowledged or a dead letter
        assert unsettled_records(db) == []

    # When the node comes back and drains
    with (
        RecordStore(db) as store,
        RelayClient(relay_server.url, private_key=node_key, key_alg=KeyAlg.ED25519, agent_id=NODE) as client,
    ):
        worker = RelayService(store, client)
        worker.start()
        assert worker.drain(max_rounds=100)
        local = {r.key: (r.record_id, r.hlc) for r in store.list("crash", include_deleted=True)}
        dead = store.health().dead_letters
    # Then the cloud holds exactly the node's last record of every key, none applied twice
    cloud = relay_server.cloud
    held = {key: (record_id, hlc) for (_, _, key), (record_id, hlc, _) in cloud.state().items()}
    outcomes = {
        kind: sum(n for (_, k), n in cloud.outcomes.items() if k == kind)
        for kind in ("applied", "duplicate", "stale")
    }
    lost = sum(1 for key, value in local.items() if held.get(key) != value)
    print(
        f"\nrelay crash test: {KILLS} SIGKILLs, {len(local)} keys, lost {lost}, "
        f"applied twice {len(cloud.applied_twice())}, dead letters {dead}, outcomes {outcomes}, "
        f"requests {relay_server.requests}"
    )
    assert held == local
    assert cloud.applied_twice() == []
    assert dead == 0
