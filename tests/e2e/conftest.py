"""A real `fleetlink dev` process for the end-to-end tests, reached over real HTTP."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest

from fleetlink.client.operator import OperatorClient

REPO = Path(__file__).resolve().parents[2]
LISTENING = "fleetlink dev listening on "
E2E_OPERATOR_TOKEN = "e2e-operator-token"
#: Guards against a hung process; never an assertion about speed.
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


def pytest_configure(config: pytest.Config) -> None:
    # Known even when pytest-xdist is off (-p no:xdist), so --strict-markers accepts it.
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one xdist worker")


@dataclass
class DevProcess:
    """A running `fleetlink dev` subprocess, its URL, and everything it printed."""

    process: subprocess.Popen[str]
    url: str = ""
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.stdout[-50:]) + "".join(self.stderr[-50:])

    def interrupt(self) -> int:
        """Ctrl-C, then the exit code (killed after STOP_TIMEOUT_S if it hangs)."""
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        for reader in self.readers:  # all output read, up to the pipes' end
            reader.join(timeout=STOP_TIMEOUT_S)
        return code


@dataclass(frozen=True)
class DevServer:
    url: str
    operator_token: str


def _drain(stream: IO[str], lines: list[str], first_url: queue.Queue[str] | None) -> None:
    """Keep reading so the child never blocks on a full pipe; hand over the URL line."""
    for line in stream:
        lines.append(line)
        if first_url is not None and line.startswith(LISTENING):
            first_url.put(line[len(LISTENING) :].strip())
            first_url = None
    if first_url is not None:
        first_url.put("")


def start_dev_process(
    operator_token: str | None = E2E_OPERATOR_TOKEN, *, options: tuple[str, ...] = ("--ephemeral",)
) -> DevProcess:
    """Start `python -m fleetlink.cli dev --port 0 OPTIONS` and wait until it serves /v1/health.

    ``operator_token`` None: the dev stack's own (generated, or kept in its data folder)."""
    env = {
        **{name: value for name, value in os.environ.items() if name != "FLEETLINK_OPERATOR_TOKEN"},
        **({"FLEETLINK_OPERATOR_TOKEN": operator_token} if operator_token is not None else {}),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetlink.cli", "dev", "--port", "0", *options],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    dev = DevProcess(process)
    url_line: queue.Queue[str] = queue.Queue()
    dev.readers = [
        threading.Thread(target=_drain, args=(process.stdout, dev.stdout, url_line), daemon=True),
        threading.Thread(target=_drain, args=(process.stderr, dev.stderr, None), daemon=True),
    ]
    for reader in dev.readers:
        reader.start()
    try:
        dev.url = url_line.get(timeout=START_TIMEOUT_S)
        assert dev.url, f"fleetlink dev exited before listening:\n{dev.output()}"
        _wait_healthy(dev)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return dev


def _wait_healthy(dev: DevProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert dev.process.poll() is None, f"fleetlink dev died:\n{dev.output()}"
        try:
            if httpx.get(f"{dev.url}/v1/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"fleetlink dev never became healthy:\n{dev.output()}"
        time.sleep(0.1)  # polling interval while waiting for readiness, not an assertion


@pytest.fixture(scope="session")
def dev_server() -> Iterator[DevServer]:
    """One `fleetlink dev` for the session; stopped with Ctrl-C, which must exit 0."""
    dev = start_dev_process()
    yield DevServer(dev.url, E2E_OPERATOR_TOKEN)
    code = dev.interrupt()
    assert code == 0, f"fleetlink dev exited {code} on SIGINT:\n{dev.output()}"


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[DevServer]:
    """A dev stack of the module's own (its ``OPERATOR_TOKEN``), whose agents heartbeat every
    second; stopped with Ctrl-C, which must exit 0."""
    token: str = request.module.OPERATOR_TOKEN
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEETLINK_HEARTBEAT_INTERVAL_S", "1")
        dev = start_dev_process(token)
    yield DevServer(dev.url, token)
    assert dev.interrupt() == 0, dev.output()


@pytest.fixture(scope="module")
def operator(server: DevServer) -> Iterator[OperatorClient]:
    """The operator's client on the module's dev stack."""
    with OperatorClient(server.url, server.operator_token) as client:
        yield client


@pytest.fixture
def client(dev_server: DevServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_server.url, timeout=30) as http:
        yield http
