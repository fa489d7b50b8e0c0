"""A node that writes and syncs without end, to be SIGKILLed at any moment (see test_crash_safety).

Usage: python -m tests.integration.relay.crash_writer DB URL KEY_FILE AGENT_ID SEED
Prints ``started`` once its first write committed. Writes sets and deletes of 40 keys and runs a
sync round every few writes, so a kill lands mid write, mid request, or between the cloud applying
a batch and the outbox being trimmed.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from fleetlink.agent.relay.service import RelayService
from fleetlink.agent.relay.store import RecordStore
from fleetlink.auth.keys import load_private_key
from fleetlink.client.backoff import Backoff
from fleetlink.client.relay import RelayClient
from fleetlink.core.entities import KeyAlg

KEYS = 40


def main(db: str, url: str, key_file: str, agent_id: str, seed: str) -> None:
    rng = random.Random(int(seed))
    key = load_private_key(Path(key_file).read_text())
    store = RecordStore(db)
    client = RelayClient(url, private_key=key, key_alg=KeyAlg.ED25519, agent_id=agent_id)
    worker = RelayService(store, client, backoff=Backoff(base_s=0.01, max_s=0.05))
    worker.start()
    counter = 0
    while True:  # bounded by the SIGKILL the test sends
        counter += 1
        key_name = f"k{rng.randrange(KEYS)}"
        if rng.random() < 0.2:
            store.delete("crash", key_name)
        else:
            store.set("crash", key_name, {"n": counter, "pad": "x" * rng.randrange(200)})
        if counter == 1:
            print("started", flush=True)
        if rng.random() < 0.3:
            worker.step()


if __name__ == "__main__":
    main(*sys.argv[1:])
