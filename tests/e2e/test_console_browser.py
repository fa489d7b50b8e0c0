"""`fleetlink console` in headless Chromium against `fleetlink dev` with a registered agent and a
running daemon: the agent shows online, a task started from the page runs and its output appears,
a tunnel's health change appears without a reload, a viewer sees no write control and its write
through the API is a 403. A screenshot of each page goes to build/console-screenshots/ (ignored)."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from fleetlink.client.http import FleetlinkApiError
from fleetlink.client.operator import OperatorClient
from fleetlink.console.cli import LISTENING
from tests.e2e.browser import Browser, end_process
from tests.e2e.conftest import REPO, DevProcess, DevServer, start_dev_process
from tests.e2e.test_docs_browser import chromium
from tests.e2e.test_tasks_e2e import AgentProcess, _env, _fleetlink, eventually, launch_agent, register_tagged
from tests.integration.tunnels.targets import TargetServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

OPERATOR_TOKEN = "e2e-console-operator-token"
SHOTS = REPO / "build" / "console-screenshots"
#: Guards against a hung console; never an assertion about speed.
START_TIMEOUT_S = 60


@dataclass
class Stack:
    server: DevServer
    viewer_token: str
    agent_id: str
    agent: AgentProcess
    home: Path
    operator: OperatorClient
    listen_port: int


@dataclass
class Console:
    process: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.url.split("/?", 1)[0]

    @property
    def cookie(self) -> str:
        """The session cookie the console sets (one per console: its port is in the name)."""
        port = self.base.rsplit(":", 1)[1]
        return f"fleetlink_console_{port}={self.url.split('key=')[1]}"

    def stop(self) -> None:
        end_process(self.process)


def start_console(server: DevServer, token: str) -> Console:
    env = {
        **os.environ,
        "FLEETLINK_URL": server.url,
        "FLEETLINK_OPERATOR_TOKEN": token,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetlink.cli", "console", "--port", "0", "--sample-every", "0.5"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    console = Console(process)
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            console.lines.append(line)
            if line.startswith(LISTENING):
                found.put(line[len(LISTENING) :].strip())
        found.put("")

    threading.Thread(target=read, daemon=True).start()
    console.url = found.get(timeout=START_TIMEOUT_S)
    assert console.url, "".join(console.lines)
    return console


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A dev stack with a viewer token, and one registered agent whose daemon runs."""
    chromium()  # skipped (or failed in CI) before anything starts when the browser is missing
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEETLINK_HEARTBEAT_INTERVAL_S", "1")
        dev: DevProcess = start_dev_process(
            OPERATOR_TOKEN, options=("--ephemeral", "--operator", "vera:viewer")
        )
    server = DevServer(dev.url, OPERATOR_TOKEN)
    eventually(lambda: "operator token vera" in "".join(dev.stdout), "the viewer token to be printed")
    (viewer_token,) = re.findall(r"operator token vera \(viewer\): (\S+)", "".join(dev.stdout))
    operator = OperatorClient(server.url, OPERATOR_TOKEN)
    home = tmp_path_factory.mktemp("console-agent")
    port = free_port()
    (home / "agent.toml").write_text(
        f"[tunnels]\nhealth_interval_s = 0.3\n[tunnels.listen_ports]\nweb = {port}\n"
    )
    agent_id, env = register_tagged(server, operator, home, {"env": "console"}, name="console-node")
    agent = launch_agent(agent_id, env)
    yield Stack(server, viewer_token, agent_id, agent, home, operator, port)
    assert agent.stop() == 0, agent.output()
    operator.close()
    assert dev.interrupt() == 0, dev.output()


@pytest.fixture(scope="module")
def admin_console(stack: Stack) -> Iterator[Console]:
    console = start_console(stack.server, OPERATOR_TOKEN)
    yield console
    console.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    opened = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield opened
    opened.close()


def signed_in(browser: Browser, console: Console) -> None:
    browser.open(console.url)  # the key in the URL becomes a session cookie, then the key leaves the URL
    assert "key=" not in browser.evaluate("location.href")


def test_the_fleet_page_shows_the_agent_online_from_assets_it_serves_itself(
    stack: Stack, admin_console: Console, browser: Browser
) -> None:
    # Given the console signed in
    signed_in(browser, admin_console)
    # Then the page references nothing but the console itself (no CDN: it works offline)
    html = browser.evaluate("document.documentElement.outerHTML")
    assert not re.search(r"""(src|href)=["']https?://""", html)
    # And the agent shows online (the page refreshes itself: no reload)
    browser.evaluate("window.notReloaded = true")
    row = f"tr[data-agent='{stack.agent_id}'] .badge"
    browser.wait_for(
        f"(document.querySelector(\"{row}\") || {{}}).textContent === 'online'", "the agent online"
    )
    assert browser.evaluate("window.notReloaded") is True
    assert int(browser.text("[data-liveness=online]")) >= 1
    assert "env=console" in browser.text("#live")
    browser.wait_for("document.querySelectorAll('svg.chart polyline').length === 4", "the liveness chart")
    browser.screenshot(SHOTS / "fleet.png")
    # And the agent's page shows its hardware, tags and history
    browser.open(f"{admin_console.base}/agents/{stack.agent_id}")
    assert browser.text("#agent-liveness") == "online"
    assert "console-node" in browser.text("h1")
    assert "Registration history" in browser.text("main")
    browser.screenshot(SHOTS / "agent.png")


def test_a_task_started_from_the_page_runs_and_its_output_appears(
    stack: Stack, admin_console: Console, browser: Browser
) -> None:
    # Given the tasks page
    signed_in(browser, admin_console)
    browser.open(f"{admin_console.base}/tasks")
    browser.screenshot(SHOTS / "tasks.png")
    # When the operator starts a task on the agent, one at a time (rate control), from the form
    browser.fill("#start-task [name=command]", "echo hello-from-the-console")
    browser.fill("#start-task [name=agent_ids]", stack.agent_id)
    browser.fill("#start-task [name=max_concurrency]", "1")
    browser.click("#start-task button[type=submit]")
    browser.wait_for("location.pathname.startsWith('/tasks/tsk_')", "the task's page")
    browser.wait_for("document.readyState === 'complete'", "the task's page to load")
    browser.evaluate("window.notReloaded = true")
    # Then its output appears on the page as the agent runs it, without a reload
    browser.wait_for(
        "document.querySelector('#executions pre.output').textContent.includes('hello-from-the-console')",
        "the task's output on the page",
    )
    browser.wait_for("document.querySelector('#task-state').textContent === 'finished'", "the task finished")
    assert browser.evaluate("window.notReloaded") is True
    assert "succeeded" in browser.text("#executions")
    browser.screenshot(SHOTS / "task.png")
    # And the agent's page lists it among its own tasks (from the agent's executions), succeeded
    task_id = browser.evaluate("location.pathname").rsplit("/", 1)[-1]
    browser.open(f"{admin_console.base}/agents/{stack.agent_id}")
    row = browser.text(f"#agent-tasks tr:has(a[href='/tasks/{task_id}'])")
    assert "succeeded" in row, row
    assert "hello-from-the-console" in row, row
    browser.screenshot(SHOTS / "agent-tasks.png")
    # And the audit log (page and `fleetlink audit ls`) says the admin created it
    browser.open(f"{admin_console.base}/audit")
    assert "task.create" in browser.text("#audit")
    browser.screenshot(SHOTS / "audit.png")
    env = _env(FLEETLINK_URL=stack.server.url, FLEETLINK_OPERATOR_TOKEN=OPERATOR_TOKEN)
    listed = _fleetlink("audit", "ls", "--action", "task.create", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "task.create" in listed.stdout
    assert "admin" in listed.stdout


def test_a_tunnels_health_change_appears_without_a_reload(
    stack: Stack, admin_console: Console, browser: Browser
) -> None:
    # Given a tunnel to a running local service, up
    target = TargetServer("console").start()
    try:
        tunnel = stack.operator.create_tunnel(
            stack.agent_id,
            {"provider": "self_hosted", "name": "web", "mode": "http", "local_target": target.target},
        )
        signed_in(browser, admin_console)
        browser.open(f"{admin_console.base}/tunnels/{tunnel.tunnel_id}")
        browser.evaluate("window.notReloaded = true")
        browser.wait_for("document.querySelector('#tunnel-health').textContent === 'up'", "the tunnel up")
        browser.screenshot(SHOTS / "tunnel.png")
        # When its service stops
    finally:
        target.stop()
    # Then the page shows it down, without a reload
    browser.wait_for("document.querySelector('#tunnel-health').textContent === 'down'", "the tunnel down")
    assert browser.evaluate("window.notReloaded") is True
    # And the fleet's tunnels page shows it, with a control to disable it
    browser.open(f"{admin_console.base}/tunnels")
    assert browser.text(f"[data-health-of='{tunnel.tunnel_id}']") == "down"
    browser.screenshot(SHOTS / "tunnels.png")
    # And disabling it from its row takes effect (the page comes back with it disabled)
    browser.click(f"tr[data-tunnel='{tunnel.tunnel_id}'] form.switch button")
    browser.wait_for(
        f"(document.querySelector(\"tr[data-tunnel='{tunnel.tunnel_id}'] form.switch button\") || {{}})"
        ".textContent === 'Enable'",
        "the tunnel disabled",
    )
    assert stack.operator.get_tunnel(tunnel.tunnel_id).enabled is False


def test_the_records_page_queries_a_collection_and_shows_its_read_policy(
    stack: Stack, admin_console: Console, browser: Browser
) -> None:
    # Given a record the agent synced through the relay
    env = _env(FLEETLINK_STATE_DIR=str(stack.home), FLEETLINK_URL=stack.server.url)
    written = _fleetlink("records", "put", "inventory", "disk", '{"gb": 512}', env=env)
    assert written.returncode == 0, written.stdout + written.stderr
    signed_in(browser, admin_console)

    def shown() -> bool:
        browser.open(f"{admin_console.base}/records?collection=inventory")
        return "512" in browser.text("main")

    # When the operator queries the collection; Then the record and the read policy show
    eventually(shown, "the synced record on the records page")
    assert "Every active agent may query it" in browser.text("main")
    browser.screenshot(SHOTS / "records.png")


def test_a_viewer_sees_no_write_control_and_its_write_through_the_api_is_a_403(
    stack: Stack, browser: Browser
) -> None:
    # Given the console started with the viewer's token
    console = start_console(stack.server, stack.viewer_token)
    try:
        signed_in(browser, console)
        assert browser.text(".role") == "viewer", browser.evaluate("location.href + document.body.innerText")[
            :600
        ]
        # Then no page shows a form that writes (starting a task, tags, tunnels, read policies)
        for path in ("/", "/tasks", f"/agents/{stack.agent_id}", "/tunnels", "/records?collection=inventory"):
            browser.open(f"{console.base}{path}")
            assert browser.evaluate("document.querySelectorAll(\"form[method='post']\").length") == 0, path
        browser.open(f"{console.base}/tasks")
        browser.screenshot(SHOTS / "tasks-as-viewer.png")
        # And a write through the console itself is refused by the API (a 403 naming the role)
        refused = httpx.post(
            f"{console.base}/tasks/tsk_01KBZZZZZZZZZZZZZZZZZZZZZZ/cancel",
            headers={"Origin": console.base, "Cookie": console.cookie},
            timeout=30,
        )
        assert refused.status_code == 400
        assert "needs the operator role" in refused.text
    finally:
        console.stop()
    # And the viewer's write straight through the API is a 403 problem naming the role
    with (
        OperatorClient(stack.server.url, stack.viewer_token) as viewer,
        pytest.raises(FleetlinkApiError) as refusal,
    ):
        viewer.create_task(command="true", agent_ids=[stack.agent_id])
    assert (refusal.value.status, refusal.value.code) == (403, "role-required")
    assert refusal.value.problem["required_role"] == "operator"


def test_narrow_window_keyboard_filter_and_a_foreign_site_cannot_write(
    stack: Stack, admin_console: Console, browser: Browser
) -> None:
    # Given a narrow window
    signed_in(browser, admin_console)
    browser.resize(380, 800)
    try:
        browser.open(f"{admin_console.base}/")
        browser.wait_for(f"!!document.querySelector(\"tr[data-agent='{stack.agent_id}']\")", "the agent row")
        # Then nothing spills out sideways but inside scrolling table boxes
        assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        browser.screenshot(SHOTS / "fleet-narrow.png")
        # And "/" focuses the filter from the keyboard; typing hides rows that do not match
        browser.press_key("/")
        assert browser.evaluate("document.activeElement.dataset.filter") == "#agents"
        for key in "zzz-no-such":
            browser.press_key(key)
        browser.wait_for(
            "[...document.querySelectorAll('#agents tbody tr')].every(r => r.hidden)", "rows hidden"
        )
    finally:
        browser.resize(1280, 900)
    # And a write from another origin, or without the session, is refused before reaching the API
    cookie = {"Cookie": admin_console.cookie}
    foreign = httpx.post(
        f"{admin_console.base}/tasks", headers={"Origin": "http://evil.example", **cookie}, timeout=30
    )
    anonymous = httpx.get(f"{admin_console.base}/tasks", timeout=30)
    rebound = httpx.get(f"{admin_console.base}/", headers={"Host": "evil.example", **cookie}, timeout=30)
    assert (foreign.status_code, anonymous.status_code, rebound.status_code) == (403, 401, 403)
