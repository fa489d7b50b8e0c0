"""Dev stack throughput with its data folder, before and after the write-ahead journal, in one run.

The baseline is the code at a git ref (default: where this branch left main), unpacked to a temporary
folder with ``git archive``; the current code is this checkout. Each round starts ``fleetlink dev
--data-dir`` from one tree then the other (alternating, so drift on a shared machine hits both),
times its start-up (spawn to serving), then sends N operator writes (``POST
/v1/registration-tokens``, each a write the journal must fsync before answering) and N reads
(``GET /v1/registration-tokens``), one at a time over loopback. Prints requests per second of
each, the per-write cost added, and the ratio after/before (goal: >= 0.8).

    python bench/bench_dev_durability.py [--requests 200] [--rounds 3] [--baseline-ref REF]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.8


def baseline_tree(ref: str, into: Path) -> Path:
    """The source (src/, functions/) at ``ref``, unpacked into ``into``."""
    archive = subprocess.run(
        ["git", "archive", ref, "src", "functions"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_stack(tree: Path, requests: int) -> dict[str, float]:
    """Start a dev stack from ``tree`` on a fresh data folder; time start-up, writes and reads."""
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        env.pop("FLEETLINK_OPERATOR_TOKEN", None)
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "fleetlink.cli", "dev", "--port", "0", "--data-dir", data],
            cwd=tree,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            url = ""
            for line in process.stdout:
                if "http://127.0.0.1:" in line:
                    url = "http://" + line.split("http://", 1)[1].split()[0].rstrip("/")
                    break
            if not url:
                raise RuntimeError(f"the dev stack from {tree} did not start")
            with httpx.Client(timeout=30) as client:
                while client.get(f"{url}/v1/health").status_code != 200:
                    time.sleep(0.05)
                start_s = time.perf_counter() - started
                token = (Path(data) / "operator-token").read_text().strip()
                headers = {"Authorization": f"Bearer {token}"}
                began = time.perf_counter()
                for _ in range(requests):
                    reply = client.post(
                        f"{url}/v1/registration-tokens", json={"max_uses": 1}, headers=headers
                    )
                    reply.raise_for_status()
                writes_s = time.perf_counter() - began
                began = time.perf_counter()
                for _ in range(requests):
                    client.get(f"{url}/v1/registration-tokens?limit=5", headers=headers).raise_for_status()
                reads_s = time.perf_counter() - began
        finally:
            process.terminate()
            process.wait(timeout=60)
    return {"start_s": start_s, "writes_per_s": requests / writes_s, "reads_per_s": requests / reads_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline-ref", default=None, help="git ref of the baseline (default: merge-base with main)"
    )
    args = parser.parse_args()
    ref = (
        args.baseline_ref
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    figures: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as folder:
        before = baseline_tree(ref, Path(folder))
        for _ in range(args.rounds):
            figures["before"].append(run_stack(before, args.requests))
            figures["after"].append(run_stack(ROOT, args.requests))
    print(f"\ndev stack, --data-dir: {args.requests} writes, {args.requests} reads, {args.rounds} rounds")
    print(f"baseline: {ref[:12]} (before); this checkout (after); medians of the rounds")
    medians = {
        side: {name: statistics.median(run[name] for run in runs) for name in runs[0]}
        for side, runs in figures.items()
    }
    for name, unit in (("start_s", "s"), ("writes_per_s", "req/s"), ("reads_per_s", "req/s")):
        b, a = medians["before"][name], medians["after"][name]
        print(f"  {name:<13} before {b:8.2f} {unit:<5}  after {a:8.2f} {unit:<5}  ratio {a / b:5.2f}")
    added_ms = 1000 / medians["after"]["writes_per_s"] - 1000 / medians["before"]["writes_per_s"]
    ratio = medians["after"]["writes_per_s"] / medians["before"]["writes_per_s"]
    print(f"  per write: {added_ms:+.2f} ms (the journal's append + fsync)")
    print(f"  writes after/before {ratio:.2f} (goal >= {GOAL}): {'met' if ratio >= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
