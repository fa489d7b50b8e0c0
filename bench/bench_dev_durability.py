"""What the dev stack's write-ahead journal costs: writes per second without it, with the journal of a
git ref (before), and with this checkout's (after), in one run.

Three stacks per round, each ``fleetlink dev --data-dir`` on a fresh folder, started in turn (so
drift on a shared machine hits all three):

- ``none``: this checkout with the journal never installed (its hook replaced at start by the
  launcher below): the journal-less stack, the baseline of the goal;
- ``before``: the code at a git ref (default: where this branch left main), unpacked with
  ``git archive``;
- ``after``: this checkout.

Each is timed from spawn to serving, then sends N operator writes (``POST /v1/registration-tokens``,
each a write the journal must fsync before answering) one at a time, then N writes from
``--clients`` clients at once (as a fleet's agents write together), then N reads, over loopback.
Prints the medians and the ratios to the journal-less stack (goal: writes at least 0.8 of it).

    python bench/bench_dev_durability.py [--requests 200] [--rounds 3] [--clients 4] [--baseline-ref REF]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.8
#: ``python -c`` launcher of the journal-less stack: the dev stack, its journal's hook a no-op.
NO_JOURNAL = (
    "import sys; import fleetlink.local.server as server; "
    "server.install_journal = lambda journal: None; "
    "from fleetlink.cli.main import main; sys.argv[0] = 'fleetlink'; main()"
)
SIDES = ("none", "before", "after")


def baseline_tree(ref: str, into: Path) -> Path:
    """The source (src/, functions/) at ``ref``, unpacked into ``into``."""
    archive = subprocess.run(
        ["git", "archive", ref, "src", "functions"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def write_many(url: str, headers: dict[str, str], count: int) -> None:
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            client.post(
                f"{url}/v1/registration-tokens", json={"max_uses": 1}, headers=headers
            ).raise_for_status()


def run_stack(tree: Path, requests: int, clients: int, *, journal: bool = True) -> dict[str, float]:
    """Start a dev stack from ``tree`` on a fresh data folder; time start-up, writes and reads."""
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        env.pop("FLEETLINK_OPERATOR_TOKEN", None)
        launcher = ["-m", "fleetlink.cli"] if journal else ["-c", NO_JOURNAL]
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, *launcher, "dev", "--port", "0", "--data-dir", data],
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
                write_many(url, headers, 10)  # warm: every module the route needs is imported
                began = time.perf_counter()
                write_many(url, headers, requests)
                writes_s = time.perf_counter() - began
                threads = [
                    threading.Thread(target=write_many, args=(url, headers, requests // clients))
                    for _ in range(clients)
                ]
                began = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                together_s = time.perf_counter() - began
                began = time.perf_counter()
                for _ in range(requests):
                    client.get(f"{url}/v1/registration-tokens?limit=5", headers=headers).raise_for_status()
                reads_s = time.perf_counter() - began
        finally:
            process.terminate()
            process.wait(timeout=60)
    return {
        "start_s": start_s,
        "writes_per_s": requests / writes_s,
        "together_per_s": (requests // clients) * clients / together_s,
        "reads_per_s": requests / reads_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--baseline-ref", default=None, help="git ref of the 'before' journal (default: merge-base with main)"
    )
    args = parser.parse_args()
    ref = (
        args.baseline_ref
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    figures: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as folder:
        before = baseline_tree(ref, Path(folder))
        for _ in range(args.rounds):
            figures["none"].append(run_stack(ROOT, args.requests, args.clients, journal=False))
            figures["before"].append(run_stack(before, args.requests, args.clients))
            figures["after"].append(run_stack(ROOT, args.requests, args.clients))
    print(
        f"\ndev stack, --data-dir: {args.requests} writes one at a time, {args.requests} from "
        f"{args.clients} clients at once, {args.requests} reads; {args.rounds} rounds, medians"
    )
    print(f"none: this checkout without its journal; before: the journal at {ref[:12]}; after: this checkout")
    medians = {
        side: {name: statistics.median(run[name] for run in runs) for name in runs[0]}
        for side, runs in figures.items()
    }
    units = {"start_s": "s", "writes_per_s": "req/s", "together_per_s": "req/s", "reads_per_s": "req/s"}
    for name, unit in units.items():
        none, b, a = (medians[side][name] for side in SIDES)
        print(
            f"  {name:<15} none {none:7.2f} {unit:<5}  before {b:7.2f}  after {a:7.2f}   "
            f"before/none {b / none:5.2f}  after/none {a / none:5.2f}  after/before {a / b:5.2f}"
        )
    for name in ("writes_per_s", "together_per_s"):
        none, b, a = (medians[side][name] for side in SIDES)
        print(
            f"  {name}: per write {1000 / a - 1000 / none:+.2f} ms with the journal (before: "
            f"{1000 / b - 1000 / none:+.2f} ms); after/none {a / none:.2f} (goal >= {GOAL}): "
            f"{'met' if a / none >= GOAL else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
