"""Real local services for tunnel tests: an HTTP/1.1 server (JSON echo, streaming, WebSocket echo)
on 127.0.0.1, and small raw-socket clients."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fleetlink.core.closing import Closing

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Guards against a hung test; never an assertion about speed.
WAIT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float = WAIT_S, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def ws_frame(payload: bytes, *, opcode: int = 0x1, mask: bool = True) -> bytes:
    head = bytes([0x80 | opcode])
    length = len(payload)
    bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_read(rfile: Any) -> tuple[int, bytes]:
    first, second = rfile.read(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", rfile.read(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", rfile.read(8))[0]
    key = rfile.read(4) if second & 0x80 else b""
    data = rfile.read(length)
    if key:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return first & 0x0F, data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TargetServer

    def log_message(self, *_: Any) -> None:
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_GET(self) -> None:
        if "/ws" in self.path and self.headers.get("upgrade", "").lower() == "websocket":
            self._websocket()
        elif self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i in range(5):
                part = f"part-{i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                if i == 0 and self.path.startswith("/stream/gated"):
                    self.server.gate.wait(WAIT_S)
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._json(
                200,
                {
                    "server": self.server.name,
                    "path": self.path,
                    "method": "GET",
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                },
            )

    def do_POST(self) -> None:
        body = self._body()
        self._json(
            200,
            {
                "server": self.server.name,
                "path": self.path,
                "method": "POST",
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            },
        )

    def _websocket(self) -> None:
        accept = base64.b64encode(
            hashlib.sha1(
                (self.headers["sec-websocket-key"] + WS_GUID).encode(), usedforsecurity=False
            ).digest()
        )
        self.send_response(101)
        self.send_header("upgrade", "websocket")
        self.send_header("connection", "Upgrade")
        self.send_header("sec-websocket-accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        while True:
            opcode, data = ws_read(self.rfile)
            if opcode == 0x8:
                self.wfile.write(ws_frame(b"", opcode=0x8, mask=False))
                break
            self.wfile.write(ws_frame(f"{self.server.name}:".encode() + data, opcode=opcode, mask=False))
            self.wfile.flush()
        self.close_connection = True


class TargetServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.name = name
        self.gate = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def start(self) -> TargetServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class RawTarget(Closing):
    """A raw-socket HTTP target: keeps every byte it receives; ``answer(head)`` gives the bytes to
    send for each request head (None: nothing); counts the connections it accepted;
    ``close_after``: closes each connection after its first answer."""

    def __init__(self, answer: Callable[[bytes], bytes | None], *, close_after: bool = False) -> None:
        self.answer, self.close_after = answer, close_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self.received = bytearray()
        self._lock = threading.Lock()
        self.target = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(ConnectionError):  # a proxy may drop a connection mid-request
            pending = b""
            while data := conn.recv(65536):
                with self._lock:
                    self.received += data
                pending += data
                while b"\r\n\r\n" in pending:
                    head, pending = pending.split(b"\r\n\r\n", 1)
                    answer = self.answer(head)
                    if answer is not None:
                        conn.sendall(answer)
                    if self.close_after:
                        return

    def close(self) -> None:
        self.listener.close()
