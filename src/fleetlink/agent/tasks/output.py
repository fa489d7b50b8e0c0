"""Live output of a running execution: new bytes per stream, sent as numbered chunks.

:class:`OutputStreamer` reads what each stream produced since it last looked (through
:class:`NewOutput`, e.g. the process's output collectors) and sends it as one chunk: at most one
request per ``interval_s`` per execution, batching everything new, nothing when nothing is new.
A chunk that fails transiently is resent unchanged (same ``seq``: the server recognises a resend);
one the server refuses ends the streaming of that attempt (the result still carries head and tail).
Closing sends what is left in one last chunk, never waiting long: the result report comes first.
"""

from __future__ import annotations

import codecs
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fleetlink.client.http import FleetlinkApiError, FleetlinkClientError, is_transient
from fleetlink.core.tasks.output import CHUNK_MAX_BYTES

log = logging.getLogger(__name__)

#: At most one chunk a second per execution.
STREAM_INTERVAL_S = 1.0
#: New output held per stream between sends; what a faster command prints beyond it is skipped in
#: the live view (and said so), never in the result's head and tail.
LIVE_CAP_BYTES = 1024 * 1024
#: The last chunk is sent only if it can be within this long after the command ended.
CLOSE_WAIT_S = 1.5


class NewOutput(Protocol):
    def take_new(self) -> tuple[bytes, int]:
        """Bytes produced since the last call, and how many before them were dropped untaken."""
        ...


class FileTail:
    """New bytes of a file another process writes (a supervised command's stdout or stderr file),
    from ``offset`` on (a restarted daemon resumes where the server's acknowledged chunks end)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self._path = path
        self._offset = offset

    def take_new(self) -> tuple[bytes, int]:
        try:
            with open(self._path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read(LIVE_CAP_BYTES)
        except FileNotFoundError:
            return b"", 0
        self._offset += len(data)
        return data, 0


@runtime_checkable
class OutputApi(Protocol):
    def append_output(
        self, execution_id: str, *, attempt: int, seq: int, parts: list[dict[str, str]]
    ) -> Any: ...


class StreamProgress:
    """Where a supervised attempt's live output stands, kept in its run dir (``stream.json``): the
    last chunk the server acknowledged and the bytes of each stream it carried so far. A daemon
    restarted mid-stream resumes from it instead of sending chunk 1 again."""

    FILE = "stream.json"

    def __init__(self, folder: Path) -> None:
        self.path = folder / self.FILE
        self.seq = 0
        self.acked: dict[str, int] = {}
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            self.seq = int(saved["seq"])
            self.acked = {str(k): int(v) for k, v in saved["acked"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass

    def offset(self, stream: str) -> int:
        return self.acked.get(stream, 0)

    def record(self, seq: int, parts: list[dict[str, str]]) -> None:
        """Chunk ``seq`` was acknowledged: count its bytes, and keep it (atomically)."""
        self.seq = seq
        for part in parts:
            self.acked[part["stream"]] = self.offset(part["stream"]) + len(part["data"].encode())
        temporary = self.path.with_name(f".{self.FILE}.tmp")
        try:
            temporary.write_text(json.dumps({"seq": seq, "acked": self.acked}), encoding="utf-8")
            temporary.replace(self.path)
        except OSError as error:  # the stream goes on; a restart would only resend from further back
            log.info("cannot keep the live output's progress: %s", error)


def skipped_line(count: int) -> str:
    return f"\n[... {count} bytes skipped in the live view ...]\n"


class OutputStreamer:
    """Streams one attempt's stdout and stderr to the API while it runs (a thread of its own)."""

    def __init__(
        self,
        api: OutputApi,
        execution_id: str,
        attempt: int,
        sources: Mapping[str, NewOutput],
        *,
        interval_s: float = STREAM_INTERVAL_S,
        max_chunk_bytes: int = CHUNK_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
        progress: StreamProgress | None = None,
    ) -> None:
        self._api = api
        self.execution_id = execution_id
        self.attempt = attempt
        self._sources = dict(sources)
        self._decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in sources}
        self._held = dict.fromkeys(sources, "")
        self._interval_s = interval_s
        self._max_chunk_bytes = max_chunk_bytes
        self._clock = clock
        self._pending: list[dict[str, str]] | None = None
        self._progress = progress
        #: The last chunk the server acknowledged.
        self.seq = progress.seq if progress is not None else 0
        self.requests = 0
        self._last_send = float("-inf")
        self._refused = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"output-{execution_id}", daemon=True)

    def start(self) -> OutputStreamer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.send_once()

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Stop, and send what is left as one last chunk if that can be done within ``wait_s``.

        A command that ended before its first chunk sends none: its result carries its output.
        """
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.seq == 0 and self._pending is None:
            return
        room = self._last_send + self._interval_s - self._clock()
        if room > wait_s:
            return
        if room > 0:
            time.sleep(room)
        self.send_once(final=True)

    def _collect(self, final: bool) -> None:
        for name, source in self._sources.items():
            data, skipped = source.take_new()
            text = self._decoders[name].decode(data, final=final)
            if skipped:
                text = skipped_line(skipped) + text
            self._held[name] += text

    def _parts(self) -> list[dict[str, str]]:
        """Held text of each stream, up to the chunk's size; the rest stays for the next chunk."""
        parts: list[dict[str, str]] = []
        room = self._max_chunk_bytes
        for name, text in self._held.items():
            if not text or room <= 0:
                continue
            raw = text.encode()
            taken = raw[:room].decode("utf-8", errors="ignore") if len(raw) > room else text
            if not taken:
                continue
            parts.append({"stream": name, "data": taken})
            self._held[name] = text[len(taken) :]
            room -= len(taken.encode())
        return parts

    def send_once(self, *, final: bool = False) -> bool:
        """Send the pending chunk, or a new one of what is new; True when nothing is left owed."""
        if self._refused:
            return True
        if self._pending is None:
            self._collect(final)
            parts = self._parts()
            if not parts:
                return True
            self._pending = parts
        self._last_send = self._clock()
        self.requests += 1
        try:
            self._api.append_output(
                self.execution_id, attempt=self.attempt, seq=self.seq + 1, parts=self._pending
            )
        except FleetlinkApiError as error:
            if is_transient(error):
                log.info("live output of %s: %s; resending", self.execution_id, error)
                return False
            log.warning("live output of %s refused (%s); not streaming it further", self.execution_id, error)
            self._refused = True
            return True
        except FleetlinkClientError as error:
            log.info("live output of %s: %s; resending", self.execution_id, error)
            return False
        self.seq += 1
        if self._progress is not None:
            self._progress.record(self.seq, self._pending)
        self._pending = None
        return True
