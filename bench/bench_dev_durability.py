"""What the dev stack's write-ahead journal costs: writes per second without it, with the journal of a
git ref (before), and with this checkout's (after), measured side by side in one run.

Three stacks, each ``fleetlink dev --data-dir`` on a fresh folder, run at once:

- ``none``: this checkout with the journal never installed (its hook replaced at start by the
  launcher below): the journal-less stack, the baseline of the goal;
- ``before``: the code at a git ref (default: where this branch left main), unpacked with
  ``git archive``;
- ``after``: this checkout.

The requests are interleaved in small blocks (``--block`` requests to one stack, then the next, the
order turning each block), so the drift of a shared machine hits all three alike. Measured: operator
writes (``POST /v1/registration-tokens``, each a write the journal must fsync before answering) one
at a time; the same from ``--clients`` clients at once (as a fleet's agents write together); reads.
Each round starts three fresh stacks (start-up timed, spawn to serving); the ratios to the
journal-less stack are printed per round and as medians (goal: writes at least 0.8 of it).

    python bench/bench_dev_durability.py [--requests 200] [--rounds 3] [--clients 4] [--block 10]
                                         [--baseline-ref REF]
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
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
MEASURES = ("writes_per_s", "together_per_s", "reads_per_s")


def baseline_tree(ref: str, into: Path) -> Path:
    """The source (src/, functions/) at ``ref``, unpacked into ``into``."""
    archive = subprocess.run(
        ["git", "archive", ref, "src", "functions"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


@dataclass
class Stack:
    url: str
    headers: dict[str, str]
    start_s: float
    #: One kept-alive connection per client writing at once (made on first use).
    clients: list[httpx.Client] = field(default_factory=list)

    def write(self, client: httpx.Client, count: int) -> None:
        for _ in range(count):
            body = {"max_uses": 1}
            client.post(
                f"{self.url}/v1/registration-tokens", json=body, headers=self.headers
            ).raise_for_status()

    def read(self, client: httpx.Client, count: int) -> None:
        for _ in range(count):
            client.get(f"{self.url}/v1/registration-tokens?limit=5", headers=self.headers).raise_for_status()

    def write_together(self, clients: int, count: int) -> None:
        """``count`` writes from each of ``clients`` clients at once, each on its own connection."""
        while len(self.clients) < clients:
            self.clients.append(httpx.Client(timeout=30))
        threads = [
            threading.Thread(target=self.write, args=(client, count)) for client in self.clients[:clients]
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def close(self) -> None:
        for client in self.clients:
            client.close()


@contextmanager
def dev_stack(tree: Path, *, journal: bool) -> Iterator[Stack]:
    """A dev stack from ``tree`` on a fresh data folder, serving (and warmed up)."""
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
                stack = Stack(url, {"Authorization": f"Bearer {token}"}, start_s)
                stack.write(client, 10)  # warm: every module the route needs is imported
                stack.read(client, 5)
            try:
                yield stack
            finally:
                stack.close()
        finally:
            process.terminate()
            process.wait(timeout=60)


def interleaved(
    stacks: dict[str, Stack], requests: int, block: int, run: Callable[[Stack, int], None]
) -> dict[str, float]:
    """Requests per second of each stack, ``run`` given ``block`` requests at a time to each in turn."""
    spent = dict.fromkeys(stacks, 0.0)
    order = list(stacks)
    done = 0
    while done < requests:
        count = min(block, requests - done)
        for side in order:
            began = time.perf_counter()
            run(stacks[side], count)
            spent[side] += time.perf_counter() - began
        order = order[1:] + order[:1]
        done += count
    return {side: requests / seconds for side, seconds in spent.items()}


def one_round(trees: dict[str, tuple[Path, bool]], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One round: three fresh stacks, each measure interleaved across them."""
    with ExitStack() as running, httpx.Client(timeout=30) as client:
        stacks = {
            side: running.enter_context(dev_stack(tree, journal=on)) for side, (tree, on) in trees.items()
        }
        per_client = max(1, args.block // 2)  # writes per client and block, all clients at once
        figures = {
            "writes_per_s": interleaved(stacks, args.requests, args.block, lambda s, n: s.write(client, n)),
            "together_per_s": interleaved(
                stacks,
                args.requests,
                per_client * args.clients,
                lambda s, n: s.write_together(args.clients, per_client),
            ),
            "reads_per_s": interleaved(stacks, args.requests, args.block, lambda s, n: s.read(client, n)),
        }
        figures["start_s"] = {side: stack.start_s for side, stack in stacks.items()}
    return {side: {name: figures[name][side] for name in figures} for side in trees}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--block", type=int, default=10)
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
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as folder:
        before = baseline_tree(ref, Path(folder))
        trees = {"none": (ROOT, False), "before": (before, True), "after": (ROOT, True)}
        for number in range(1, args.rounds + 1):
            figures = one_round(trees, args)
            rounds.append(figures)
            print(
                f"round {number}: "
                + "; ".join(
                    f"{name} none {figures['none'][name]:.1f} before {figures['before'][name]:.1f} "
                    f"after {figures['after'][name]:.1f}"
                    for name in MEASURES
                ),
                flush=True,
            )
    print(
        f"\ndev stack, --data-dir, three stacks side by side: {args.requests} writes one at a time, "
        f"{args.requests} from {args.clients} clients at once, {args.requests} reads, in blocks of "
        f"{args.block}; {args.rounds} rounds"
    )
    print(f"none: this checkout without its journal; before: the journal at {ref[:12]}; after: this checkout")
    for name in ("start_s", *MEASURES):
        unit = "s" if name == "start_s" else "req/s"
        medians = {side: statistics.median(r[side][name] for r in rounds) for side in SIDES}
        ratios = {
            pair: [r[pair[0]][name] / r[pair[1]][name] for r in rounds]
            for pair in (("before", "none"), ("after", "none"), ("after", "before"))
        }
        print(
            f"  {name:<15} medians none {medians['none']:7.2f} before {medians['before']:7.2f} after "
            f"{medians['after']:7.2f} {unit}; ratios per round "
            + "  ".join(f"{a}/{b} " + " ".join(f"{x:.2f}" for x in xs) for (a, b), xs in ratios.items())
        )
    for name in ("writes_per_s", "together_per_s"):
        ratio = statistics.median(r["after"][name] / r["none"][name] for r in rounds)
        before = statistics.median(r["before"][name] / r["none"][name] for r in rounds)
        added = statistics.median(1000 / r["after"][name] - 1000 / r["none"][name] for r in rounds)
        print(
            f"  {name}: after/none median {ratio:.2f} (before/none {before:.2f}; per write {added:+.2f} ms "
            f"with the journal); goal >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
