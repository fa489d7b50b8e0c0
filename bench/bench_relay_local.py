"""Local relay writes: record + outbox in one commit per write, against a raw sqlite3 insert.

For each durability setting (``synchronous`` FULL and NORMAL, both in WAL) it times
``RecordStore.set`` (validate, serialise, advance and persist the hlc, upsert the record, upsert
its outbox entry, commit) and, in the same run, a plain ``INSERT OR REPLACE`` of the same JSON with
one commit per row. Rounds alternate between the two to share the disk's moods. Goal: at least
5,000 writes/s with FULL, and at most 1.5x the raw insert's time per write.

    PYTHONPATH=src:. python bench/bench_relay_local.py [--writes 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fleetlink.agent.relay.store import RecordStore, Synchronous

GOAL_PER_S = 5_000
GOAL_RATIO = 1.5


def value(i: int) -> dict[str, object]:
    return {"n": i, "host": f"node-{i % 97}", "cpu": [0.25, 0.5, i % 7], "ok": True}


def raw_writer(path: Path, synchronous: Synchronous) -> tuple[Callable[[int], None], Callable[[], None]]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS kv (collection TEXT, key TEXT, value TEXT, PRIMARY KEY (collection, key))"
    )

    def write(i: int) -> None:
        conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", ("bench", f"k{i}", json.dumps(value(i))))

    return write, conn.close


def store_writer(path: Path, synchronous: Synchronous) -> tuple[Callable[[int], None], Callable[[], None]]:
    store = RecordStore(path, synchronous=synchronous)

    def write(i: int) -> None:
        store.set("bench", f"k{i}", value(i))

    return write, store.close


def rate(write: Callable[[int], None], start: int, count: int) -> float:
    began = time.perf_counter()
    for i in range(start, start + count):
        write(i)
    return count / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=3_000, help="writes per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"relay local writes: {args.writes} writes x {args.rounds} rounds, one commit per write, WAL")
    print(f"{'synchronous':<12} {'raw insert/s':>13} {'record+outbox/s':>16} {'ratio':>6}  goal")
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        for synchronous in ("FULL", "NORMAL"):
            raw, raw_close = raw_writer(Path(tmp) / f"raw-{synchronous}.db", synchronous)
            rec, rec_close = store_writer(Path(tmp) / f"agent-{synchronous}.db", synchronous)
            raw_rates, rec_rates = [], []
            for round_ in range(args.rounds):
                start = round_ * args.writes
                raw_rates.append(rate(raw, start, args.writes))
                rec_rates.append(rate(rec, start, args.writes))
            raw_close()
            rec_close()
            raw_s, rec_s = statistics.median(raw_rates), statistics.median(rec_rates)
            ratio = raw_s / rec_s
            goal = (
                f">= {GOAL_PER_S}/s and <= {GOAL_RATIO}x"
                if synchronous == "FULL"
                else f"<= {GOAL_RATIO}x (info)"
            )
            print(f"{synchronous:<12} {raw_s:>13,.0f} {rec_s:>16,.0f} {ratio:>5.2f}x  {goal}")


if __name__ == "__main__":
    main()
