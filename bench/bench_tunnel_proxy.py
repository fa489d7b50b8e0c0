"""Overhead of the self_hosted provider's proxy, and reconcile time for 100 tunnels on one agent.

1. Requests per second, p50/p99 latency and CPU per request of keep-alive GETs (16 connections,
   512-byte answers). The baseline, "direct", is the same load generator talking straight to the
   same target over keep-alive connections, no proxy in between. Then the same load through the
   proxy as it is now, and through the proxy as it was at ``--before`` (a git revision; default:
   the last stream-based one), and through two floors (a relay that parses nothing, and the same
   relay feeding llhttp both ways), in the same run; the variants take turns, ``ROUNDS`` times
   each, and the median of each is printed. The proxies keep their upstream connections alive too.
   Target, proxy and load generator each run in a process of their own, the proxies on the
   agent's loop (uvloop when installed); CPU is counted for all three processes (goal: proxied /
   direct throughput >= 0.7, direct / proxied CPU per request >= 0.6). CPU time is read in clock
   ticks (10 ms): on a busy machine, ``--requests`` and ``--rounds`` above their defaults steady it.
2. Reconciling 100 self_hosted tunnels: first apply (stores, starts 100 listeners), an unchanged
   apply, one health round over all of them, and shutdown.

Loopback only; every loop is bounded by a request count. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
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
ROUNDS = 3
TUNNELS = 100
#: The last revision whose proxy read requests through asyncio streams (the "before" of issue 19).
BEFORE_REVISION = "72e4d2c"
#: The proxy's modules; a revision may hold only some of them (``proxy`` itself is required).
_PROXY_FILES = ("proxy", "proxy_http", "proxy_upstream", "proxy_tcp", "strict_http")

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

#: The floor any proxy stands on here: a relay that parses nothing, each client connection spliced
#: to a connection of its own to the target, on the same loop. What it costs is socket I/O only.
#: With "parse", every connection also feeds what it relays to an llhttp parser bound to the
#: callbacks the proxy binds, doing nothing in them: the floor of a proxy parsing with llhttp.
RELAY = """
import asyncio, sys, httptools
from fleetlink.agent.tunnels.proxy import new_event_loop
PARSE = sys.argv[2:] == ["parse"]
class Callbacks:
    def on_message_begin(self): pass
    def on_url(self, url): pass
    def on_header(self, name, value): pass
    def on_headers_complete(self): pass
    def on_body(self, body): pass
    def on_message_complete(self): pass
class Target(asyncio.Protocol):
    def __init__(self, client):
        self.client = client
        self.feed = httptools.HttpResponseParser(Callbacks()).feed_data if PARSE else len
    def connection_made(self, transport): self.transport = transport
    def data_received(self, data):
        self.feed(data)
        self.client.transport.write(data)
class Client(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.target, self.pending = transport, None, []
        self.feed = httptools.HttpRequestParser(Callbacks()).feed_data if PARSE else len
        asyncio.get_running_loop().create_task(self.connect())
    async def connect(self):
        loop = asyncio.get_running_loop()
        _, self.target = await loop.create_connection(lambda: Target(self), "127.0.0.1", int(sys.argv[1]))
        for data in self.pending: self.target.transport.write(data)
    def data_received(self, data):
        self.feed(data)
        if self.target is None: self.pending.append(data)
        else: self.target.transport.write(data)
async def main():
    server = await asyncio.get_running_loop().create_server(Client, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
new_event_loop().run_until_complete(main())
"""

PROXY = """
import asyncio, importlib, sys
proxy = importlib.import_module(sys.argv[2])
async def main():
    server = proxy.HttpProxy(proxy.RouteTable(sys.argv[1], [("/api", sys.argv[1], 0)]))
    await server.start()
    print(server.port, flush=True)
    await asyncio.Event().wait()
# the loop the agent's tunnels run on (uvloop when installed)
proxy.new_event_loop().run_until_complete(main())
"""


def spawn(code: str, *args: str, path: str = "") -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONPATH": ":".join(filter(None, [path, str(ROOT / "src"), str(ROOT)]))}
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def before_proxy(revision: str, into: Path) -> str | None:
    """The proxy as it was at ``revision``, importable from ``into`` as ``before_proxy``."""
    for name in _PROXY_FILES:
        shown = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{revision}:src/fleetlink/agent/tunnels/{name}.py"],
            capture_output=True,
            text=True,
        )
        if shown.returncode != 0:
            if name == "proxy":
                return None
            continue
        source = shown.stdout
        for other in _PROXY_FILES:
            source = source.replace(f"fleetlink.agent.tunnels.{other} ", f"before_{other} ")
        (into / f"before_{name}.py").write_text(source)
    return "before_proxy"


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


class Run:
    """One variant's rounds: requests/s, latencies, and CPU microseconds per request by process."""

    def __init__(self) -> None:
        self.rps: list[float] = []
        self.latencies: list[float] = []
        self.cpu: dict[str, list[float]] = {"load": [], "target": [], "proxy": []}

    def add(self, rps: float, latencies: list[float], cpu: dict[str, float]) -> None:
        self.rps.append(rps)
        self.latencies += latencies
        for name, value in cpu.items():
            self.cpu[name].append(value)

    def median_cpu(self, name: str) -> float:
        return statistics.median(self.cpu[name])

    @property
    def total_cpu(self) -> float:
        return statistics.median(map(sum, zip(*self.cpu.values(), strict=True)))


def bench_proxy(before_revision: str) -> None:
    target, target_port = spawn(TARGET)
    upstream = f"127.0.0.1:{target_port}"
    processes = [target]
    ports = {"direct": target_port}
    with tempfile.TemporaryDirectory() as workdir:
        before = before_proxy(before_revision, Path(workdir))
        if before is not None:
            process, ports[f"before ({before_revision})"] = spawn(PROXY, upstream, before, path=workdir)
            processes.append(process)
        process, ports["proxied (now)"] = spawn(PROXY, upstream, "fleetlink.agent.tunnels.proxy")
        processes.append(process)
        process, ports["relay, no parsing"] = spawn(RELAY, str(target_port))
        processes.append(process)
        process, ports["relay + llhttp"] = spawn(RELAY, str(target_port), "parse")
        processes.append(process)
        pids = dict(zip(ports, [None, *(p.pid for p in processes[1:])], strict=True))
        runs = {name: Run() for name in ports}
        try:
            for port in ports.values():  # warm-up: connections opened, code paths run once
                asyncio.run(load(port, "/api/x"))
            for _ in range(ROUNDS):
                for name, port in ports.items():
                    watched = {"load": None, "target": target.pid, "proxy": pids[name]}
                    start = {k: cpu_seconds(pid) for k, pid in watched.items() if k != "proxy" or pid}
                    rps, latencies = asyncio.run(load(port, "/api/x"))
                    used = {k: (cpu_seconds(watched[k]) - v) / REQUESTS * 1e6 for k, v in start.items()}
                    used.setdefault("proxy", 0.0)
                    runs[name].add(rps, latencies, used)
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(10)
    print(
        f"proxy overhead: {REQUESTS} keep-alive GETs over {CONNECTIONS} connections, 512-byte bodies;"
        f" median of {ROUNDS} rounds, variants in turn"
    )
    print(
        f"  {'':22} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'CPU us/req: all':>16} {'load':>6} {'target':>7} {'proxy':>6}"
    )
    for name, run in runs.items():
        print(
            f"  {name:22} {statistics.median(run.rps):8.0f} {percentile(run.latencies, 50):7.2f}"
            f" {percentile(run.latencies, 99):7.2f} {run.total_cpu:16.0f}"
            f" {run.median_cpu('load'):6.0f} {run.median_cpu('target'):7.0f} {run.median_cpu('proxy'):6.0f}"
        )
    direct = runs.pop("direct")
    direct_rps = statistics.median(direct.rps)
    for name, run in runs.items():
        print(
            f"  {name}: proxied / direct throughput {statistics.median(run.rps) / direct_rps:.2f}"
            f" (goal >= 0.70), direct / proxied CPU per request {direct.total_cpu / run.total_cpu:.2f}"
            " (goal >= 0.60)"
        )
    print(
        "  (the CPU ratio is the throughput ratio a CPU-bound machine would see; the throughput one"
        " also counts scheduling when three busy processes share the cores. 'relay, no parsing' is"
        " the floor: socket I/O only, what no HTTP proxy here can cost less than; 'relay + llhttp'"
        " adds llhttp parsing both ways with the proxy's callbacks doing nothing: the floor of a"
        " proxy parsing with llhttp, the rest of a proxy's CPU is its own work per exchange)"
    )
    if before is None:
        print(f"  (no 'before' variant: revision {before_revision} is not in this checkout)")


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=BEFORE_REVISION, help="git revision of the 'before' proxy")
    parser.add_argument("--proxy-only", action="store_true", help="skip the reconcile figures")
    parser.add_argument("--requests", type=int, default=REQUESTS, help="GETs per variant and round")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds per variant")
    arguments = parser.parse_args()
    REQUESTS, ROUNDS = arguments.requests, arguments.rounds
    bench_proxy(arguments.before)
    if not arguments.proxy_only:
        bench_reconcile()
