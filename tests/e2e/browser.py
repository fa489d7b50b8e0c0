"""Headless Chromium (Debian's package) driven over the DevTools protocol, for pages that must be
clicked, typed into and watched: launched the way tests/e2e/test_docs_browser.py launches it, plus
a debugging port on loopback; one page (tab), commands over one websocket."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.e2e.test_docs_browser import headless_chromium

#: Guards against a hung browser; never an assertion about speed.
WAIT_S = 60.0
_DEVTOOLS = re.compile(r"DevTools listening on (ws://\S+)")


class Browser:
    """One headless Chromium with one page; ``close()`` ends it."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 900) -> None:
        self.process = subprocess.Popen(
            [
                *headless_chromium(profile),
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        url = None
        deadline = time.monotonic() + WAIT_S
        while url is None and time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                break
            found = _DEVTOOLS.search(line)
            url = found.group(1) if found else None
        assert url, "chromium did not open its DevTools port"
        self._socket: ClientConnection = connect(
            url, max_size=64 * 1024 * 1024, open_timeout=WAIT_S
        ).__enter__()  # closed in close()
        self._next_id = 0
        #: Page events received while waiting for answers, oldest first.
        self.events: list[str] = []
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page.enable", "Runtime.enable"):
            self.command(domain)
        self.resize(width, height)

    def _send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._socket.send(json.dumps(message))
        while True:
            reply = json.loads(self._socket.recv(timeout=WAIT_S))
            if reply.get("id") == self._next_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply["method"])

    def command(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """A DevTools command on the page."""
        return self._send(method, params, self._session)

    def resize(self, width: int, height: int) -> None:
        self.command(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.command(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout_s: float = WAIT_S) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            time.sleep(0.2)  # polling interval, not an assertion

    def open(self, url: str) -> None:
        """Navigate and wait until the document (and its deferred scripts) loaded."""
        self.events.clear()
        self.command("Page.navigate", {"url": url})
        deadline = time.monotonic() + WAIT_S
        while "Page.loadEventFired" not in self.events:
            assert time.monotonic() < deadline, f"gave up waiting for {url} to load"
            self.events.append(json.loads(self._socket.recv(timeout=WAIT_S)).get("method", ""))
        self.wait_for("document.readyState === 'complete'", f"{url} to load")

    def text(self, selector: str) -> str:
        return str(
            self.evaluate(f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''")
        )

    def fill(self, selector: str, value: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")

    def click(self, selector: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def press_key(self, key: str) -> None:
        """A key typed by the keyboard (keyDown + keyUp with its text)."""
        for kind in ("keyDown", "keyUp"):
            self.command(
                "Input.dispatchKeyEvent", {"type": kind, "key": key, "text": key if kind == "keyDown" else ""}
            )

    def screenshot(self, path: Path) -> Path:
        data = self.command("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})[
            "data"
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self._socket.close()
        finally:
            end_process(self.process)


def end_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 30 s."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
