"""Overhead of the self_hosted provider's proxy, and reconcile time for 100 tunnels on one agent.

1. Requests per second and p50/p99 latency of keep-alive GETs straight to a local target, then
   through the proxy to the same target, in the same run (goal: proxy ≥ 0.7 of direct throughput).
   Target and proxy each run in a process of their own; the load comes from this one.
2. Reconciling 100 self_hosted tunnels: first apply (stores, starts 100 listeners), an unchanged
   apply, one health round over all of them, and shutdown.

Loopback only; every loop is bounded by a request count. Prints figures, asserts nothing.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

CONNECTIONS = 16
REQUESTS = 6000
TUNNELS = 100

TARGET = """
import asyncio, sys
BODY = b"x" * 512
HEAD = b"HTTP/1.1 200 OK\\r\\ncontent-type: text/plain\\r\\ncontent-length: 512\\r\\n\\r\\n"
async def handle(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(HEAD + BODY)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""

PROXY = """
import asyncio, sys
from fleetlink.agent.tunnels.proxy import HttpProxy, RouteTable, new_event_loop
async def main():
    proxy = HttpProxy(RouteTable(sys.argv[1], [("/api", sys.argv[1], 0)]))
    await proxy.start()
    print(proxy.port, flush=True)
    await asyncio.Event().wait()
# the loop the agent's tunnels run on (uvloop when installed)
new_event_loop().run_until_complete(main())
"""


def spawn(code: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


async def load(port: int, path: str) -> tuple[float, list[float]]:
    """REQUESTS keep-alive GETs over CONNECTIONS connections: (requests/s, latencies in ms)."""
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    per_connection = REQUESTS // CONNECTIONS
    latencies: list[float] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(per_connection):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return len(latencies) / (time.perf_counter() - started), latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of a process so far; this one when ``pid`` is None (Linux /proc)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_proxy() -> None:
    target, target_port = spawn(TARGET)
    proxy, proxy_port = spawn(PROXY, f"127.0.0.1:{target_port}")
    runs: dict[str, tuple[float, list[float], float]] = {}
    try:
        asyncio.run(load(target_port, "/"))  # warm-up
        asyncio.run(load(proxy_port, "/api/x"))
        for name, port in (("direct", target_port), ("proxied", proxy_port)):
            before = [cpu_seconds(None), cpu_seconds(target.pid), cpu_seconds(proxy.pid)]
            rps, latencies = asyncio.run(load(port, "/api/x"))
            after = [cpu_seconds(None), cpu_seconds(target.pid), cpu_seconds(proxy.pid)]
            cpu_us = sum(a - b for a, b in zip(after, before, strict=True)) / REQUESTS * 1e6
            runs[name] = (rps, latencies, cpu_us)
    finally:
        for process in (proxy, target):
            process.terminate()
            process.wait(10)
    print(f"proxy overhead: {REQUESTS} keep-alive GETs over {CONNECTIONS} connections, 512-byte bodies")
    print(f"  {'':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}")
    for name, (rps, values, cpu_us) in runs.items():
        print(
            f"  {name:10} {rps:9.0f} {percentile(values, 50):8.2f} {percentile(values, 99):8.2f}"
            f" {cpu_us:11.0f}"
        )
    (direct_rps, _, direct_cpu), (proxied_rps, _, proxied_cpu) = runs["direct"], runs["proxied"]
    print(f"  proxied / direct throughput: {proxied_rps / direct_rps:.2f} (goal >= 0.70)")
    print(
        f"  direct / proxied CPU per request (all processes): {direct_cpu / proxied_cpu:.2f}"
        " (the throughput ratio a CPU-bound machine would see; the line above also counts scheduling"
        " when three busy processes share the cores)"
    )


def bench_reconcile() -> None:
    from fleetlink.agent.tunnels.config import TunnelsConfig
    from fleetlink.agent.tunnels.reconciler import Reconciler
    from fleetlink.agent.tunnels.store import TunnelStore
    from fleetlink.contract.tunnels import DesiredTunnel, Route
    from fleetlink.core.ids import IdPrefix, new_id

    desired = [
        DesiredTunnel(
            tunnel_id=new_id(IdPrefix.TUNNEL),
            agent_id="agt_bench",
            provider="self_hosted",
            name=f"t{i:03d}",
            mode="http",
            local_target="127.0.0.1:9",
            enabled=True,
            created_at=1,
            updated_at=1,
            routes=[
                Route(route_id=new_id(IdPrefix.ROUTE), path_prefix=f"/r{j}", local_target="127.0.0.1:9")
                for j in range(3)
            ],
        )
        for i in range(TUNNELS)
    ]

    async def run(workdir: Path) -> dict[str, float]:
        store = TunnelStore.open(workdir / "agent.db")
        reconciler = Reconciler(store, TunnelsConfig(health_interval_s=0.0), workdir / "tunnels")
        timings = {}
        for label, step in (
            ("first apply (store + start)", lambda: reconciler.apply(desired)),
            ("unchanged apply", lambda: reconciler.apply(desired)),
            ("health round", reconciler.check),
            ("shutdown", reconciler.shutdown),
        ):
            started = time.perf_counter()
            await step()
            timings[label] = (time.perf_counter() - started) * 1000
        store.close()
        return timings

    with tempfile.TemporaryDirectory() as workdir:
        timings = asyncio.run(run(Path(workdir)))
    print(f"reconcile: {TUNNELS} self_hosted tunnels with 3 routes each on one agent")
    for label, ms in timings.items():
        print(f"  {label:28} {ms:9.1f} ms")


if __name__ == "__main__":
    bench_proxy()
    bench_reconcile()
