"""The console's page weight and its time from start to first paint, on this machine.

Against `fleetlink dev` (a subprocess) with 20 agents registered (one with 20 tasks, whose agent page
is weighed too): each console page's bytes (HTML
plus the assets it loads, raw and gzipped), and the wall time from spawning `fleetlink console` to
the browser's first contentful paint of the fleet page (the console's own start included). Same-run
baseline: the API's own /v1/docs page (Swagger UI, served by the dev stack) weighed and painted by
the same headless Chromium, so the figures come as ratios too. Prints figures; passes nothing.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.e2e.browser import Browser  # noqa: E402
from tests.e2e.conftest import start_dev_process  # noqa: E402
from tests.support import Machine  # noqa: E402

from fleetlink.client.operator import OperatorClient  # noqa: E402

TOKEN = "bench-console-token"
AGENTS = 20
PAGES = ("/", "/tasks", "/tunnels", "/records", "/audit")
#: Tasks sent to the agent whose page is weighed too (a full page of its tasks).
AGENT_TASKS = 20
PAINT_RUNS = 3
FIRST_PAINT = (
    "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime"
    " && performance.timeOrigin + performance.getEntriesByName('first-contentful-paint')[0].startTime"
)


def weight(client: httpx.Client, url: str) -> tuple[int, int, int]:
    """(requests, bytes, gzipped bytes) of a page and the scripts and stylesheets it references."""
    html = client.get(url).content
    base = url.split("/", 3)
    origin = f"{base[0]}//{base[2]}"
    assets = re.findall(rb"""(?:src|href)=["'](/[^"']+\.(?:js|css))["']""", html)
    bodies = [html, *(client.get(origin + asset.decode()).content for asset in assets)]
    return len(bodies), sum(map(len, bodies)), sum(len(gzip.compress(body)) for body in bodies)


def register(url: str, operator: OperatorClient) -> None:
    from fleetlink.auth.signatures import sign_request

    token = operator.create_token(max_uses=AGENTS, tags={"role": "bench"}).token
    for n in range(AGENTS):
        machine = Machine(f"bench-{n}")
        raw = json.dumps(machine.register_body()).encode()
        target = f"{url}/v1/agents/register"
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        headers |= sign_request(
            "POST",
            target,
            headers,
            raw,
            private_key=machine.key,
            key_id=machine.fingerprint,
            key_alg=machine.alg,
        )
        reply = httpx.post(target, content=raw, headers=headers, timeout=30)
        assert reply.status_code == 201, reply.text


def console_to_first_paint(api: str, browser: Browser) -> tuple[float, float]:
    """(seconds from spawning the console to its listening line, to the fleet page's first paint)."""
    env = {**os.environ, "FLEETLINK_URL": api, "FLEETLINK_OPERATOR_TOKEN": TOKEN}
    started = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetlink.cli", "console", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        listening = time.time() - started
        url = line.split(" on ", 1)[1].strip()
        browser.open(url)
        painted_ms = browser.wait_for(FIRST_PAINT, "first paint")
        return listening, painted_ms / 1000 - started
    finally:
        process.terminate()
        process.wait(timeout=30)


def docs_first_paint(api: str, browser: Browser) -> float:
    """Seconds from asking for /v1/docs to its first paint (the dev stack already running)."""
    started = time.time()
    browser.open(f"{api}/v1/docs")
    return float(browser.wait_for(FIRST_PAINT, "first paint")) / 1000 - started


def kib(raw: int, packed: int) -> str:
    return f"{raw / 1024:7.1f} KiB ({packed / 1024:6.1f} KiB gzipped)"


def best_median(seconds: list[float]) -> str:
    return f"{seconds[0]:.2f} s, median {seconds[len(seconds) // 2]:.2f} s"


def main() -> None:
    dev = start_dev_process(TOKEN)
    browser = Browser(Path(tempfile.mkdtemp(prefix="bench-console-")))
    try:
        with OperatorClient(dev.url, TOKEN) as operator:
            register(dev.url, operator)
            # one agent's page lists its own tasks: a full page of them
            agent_id = next(operator.iter_agents()).agent_id
            for n in range(AGENT_TASKS):
                operator.create_task(command=f"echo {n}", agent_ids=[agent_id])
        # weigh the pages through a signed-in console
        env = {**os.environ, "FLEETLINK_URL": dev.url, "FLEETLINK_OPERATOR_TOKEN": TOKEN}
        process = subprocess.Popen(
            [sys.executable, "-m", "fleetlink.cli", "console", "--port", "0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        url = process.stdout.readline().split(" on ", 1)[1].strip()
        base = url.split("/?", 1)[0]
        print(f"console page weight ({AGENTS} agents; HTML + its scripts and stylesheets):")
        with httpx.Client(follow_redirects=True, timeout=30) as client:
            client.get(url)  # the session cookie
            docs = weight(client, f"{dev.url}/v1/docs")
            for path in (*PAGES, f"/agents/{agent_id}"):
                requests, raw, packed = weight(client, base + path)
                shown = path if len(path) < 10 else "/agents/…"  # the ratios are to /v1/docs
                print(f"  {shown:<9} {requests} requests, {kib(raw, packed)}  = {raw / docs[1]:.2f}x docs")
        print(f"  baseline /v1/docs (Swagger UI): {docs[0]} requests, {kib(docs[1], docs[2])}")
        process.terminate()
        process.wait(timeout=30)

        print(f"time from start to first paint (best and median of {PAINT_RUNS}):")
        runs = [console_to_first_paint(dev.url, browser) for _ in range(PAINT_RUNS)]
        listening = sorted(r[0] for r in runs)
        painted = sorted(r[1] for r in runs)
        baseline = sorted(docs_first_paint(dev.url, browser) for _ in range(PAINT_RUNS))
        print(f"  `fleetlink console` spawned -> listening: {best_median(listening)}")
        print(f"  spawned -> fleet page first paint:        {best_median(painted)}")
        print(f"  baseline /v1/docs asked -> first paint:   {best_median(baseline)}")
        page_only = sorted(paint - listen for listen, paint in runs)
        print(
            f"  console page asked -> first paint ~ {min(page_only):.2f} s"
            f" = {min(page_only) / baseline[0]:.2f}x /v1/docs"
        )
    finally:
        browser.close()
        dev.interrupt()


if __name__ == "__main__":
    main()
