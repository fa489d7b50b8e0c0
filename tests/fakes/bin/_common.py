"""Shared bits of the fake provider executables (stdlib only)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STOP = threading.Event()


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def say(line: str, stream: Any = None) -> None:
    print(line, file=stream or sys.stdout, flush=True)


def on_signals(handler: Callable[[], None]) -> None:
    def stop(*_: Any) -> None:
        handler()
        STOP.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def serve_json(address: str, routes: Callable[[str], tuple[int, Any]]) -> ThreadingHTTPServer:
    """A local JSON status server like the ones the real agents run on loopback."""
    host, _, port = address.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            status, body = routes(self.path)
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("content-type", "text/plain" if isinstance(body, str) else "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wait_for_stop() -> None:
    while not STOP.wait(0.2):
        time.sleep(0)
