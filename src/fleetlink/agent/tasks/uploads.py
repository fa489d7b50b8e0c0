"""Complete output of a supervised execution, uploaded to the output bucket after its result.

When a stream outgrew the inline copy (its head and tail), :func:`declare_objects` compresses the
supervisor's whole file into ``<stream>.gz`` in the run dir and writes ``objects.json`` (size and
SHA-256 of each object) before the result is reported: the result carries that declaration, the
same on every resend. After the report, :class:`OutputUploader` asks the API for presigned PUTs and
uploads each object; a failure is retried with the one :class:`~fleetlink.client.backoff.Backoff`,
and a refusal (the attempt's window closed, another agent's) gives up with a log line. Neither ever
holds back a result report. A run dir is kept until its objects are uploaded or given up.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import httpx
from pydantic import TypeAdapter, ValidationError

from fleetlink.client.backoff import Backoff
from fleetlink.client.http import FleetlinkApiError, FleetlinkClientError, is_transient
from fleetlink.core.tasks.model import MAX_OUTPUT_OBJECT_BYTES, OutputObject
from fleetlink.core.tasks.output import INLINE_HEAD_BYTES, INLINE_TAIL_BYTES
from fleetlink.core.tasks.output_objects import ObjectUpload, OutputUploads

log = logging.getLogger(__name__)

#: Written before the report: the objects of the run dir's attempt (``[]``: none, all fit inline).
OBJECTS_FILE = "objects.json"
#: Written once every object is uploaded, or given up (its content says which).
DONE_FILE = "objects.done"
#: A stream larger than this has a complete copy uploaded (smaller ones are whole inline).
INLINE_BYTES = INLINE_HEAD_BYTES + INLINE_TAIL_BYTES
STREAMS = ("stdout", "stderr")
#: An upload of one object may take this long (a slow link moving a large output).
PUT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
#: The server hands out links for 24 h after the attempt ended; a run dir owed longer is given up.
GIVE_UP_AFTER_S = 24 * 3600

#: gzip's default speed/size trade-off (level 9 is several times slower for a few percent).
COMPRESS_LEVEL = 6

_objects = TypeAdapter(list[OutputObject])


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def declare_objects(folder: Path, inline_bytes: int = INLINE_BYTES) -> list[OutputObject]:
    """Compress each stream file of ``folder`` larger than ``inline_bytes``; declare the objects.

    Decided once per run dir: an existing declaration is returned as it is (a restarted agent
    reports the same result)."""
    found = declared(folder)
    if found is not None:
        return found
    objects: list[OutputObject] = []
    for stream in STREAMS:
        source = folder / stream
        if not source.is_file() or source.stat().st_size <= inline_bytes:
            continue
        target = folder / f"{stream}.gz"
        partial = target.with_name(f".{target.name}.partial")
        with source.open("rb") as raw, partial.open("wb") as out:
            # mtime 0 and no name: the same bytes compress to the same object every time
            with gzip.GzipFile(
                filename="", fileobj=out, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0
            ) as compressed:
                shutil.copyfileobj(raw, compressed, 1 << 20)
            size_before = raw.tell()
        if partial.stat().st_size > MAX_OUTPUT_OBJECT_BYTES:  # past one PUT: head and tail only
            log.warning("%s of %s is too large to keep whole; head and tail only", stream, folder.name)
            partial.unlink()
            continue
        partial.replace(target)
        objects.append(
            OutputObject(
                stream=stream,
                size=target.stat().st_size,
                sha256=_sha256_of(target),
                bytes=size_before,
            )
        )
    _write(folder / OBJECTS_FILE, _objects.dump_json(objects))
    return objects


def declared(folder: Path) -> list[OutputObject] | None:
    """The objects declared for the run dir's attempt; None before :func:`declare_objects`."""
    try:
        return _objects.validate_json((folder / OBJECTS_FILE).read_bytes())
    except (OSError, ValidationError):
        return None


def owed(folder: Path) -> bool:
    """Whether the run dir holds declared objects not uploaded (nor given up) yet."""
    return bool(declared(folder)) and not (folder / DONE_FILE).exists()


def _write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    with temporary.open("rb+") as handle:
        os.fsync(handle.fileno())
    temporary.replace(path)


class UploadsApi(Protocol):
    def request_output_uploads(self, execution_id: str, attempt: int) -> OutputUploads: ...


def put_object(upload: ObjectUpload, path: Path) -> None:
    """PUT one object to its presigned link (exactly its declared bytes, the headers as given)."""
    with path.open("rb") as body:
        response = httpx.put(upload.url, content=body, headers=upload.headers, timeout=PUT_TIMEOUT)
    if response.status_code >= 300:
        raise FleetlinkClientError(f"the output bucket answered {response.status_code} to the upload")


class OutputUploader:
    """Uploads the declared objects of reported attempts; retries by the one back-off."""

    def __init__(
        self,
        api: UploadsApi,
        *,
        backoff: Backoff | None = None,
        put: Callable[[ObjectUpload, Path], None] = put_object,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._backoff = backoff or Backoff(base_s=2.0, max_s=300.0)
        self._put = put
        self._clock = clock
        #: Run dir name → (failures so far, when to try again).
        self._failures: dict[str, tuple[int, float]] = {}

    def due(self, folder: Path) -> bool:
        failures = self._failures.get(folder.name)
        return failures is None or failures[1] <= self._clock()

    def upload(self, folder: Path, execution_id: str, attempt: int) -> bool:
        """Upload the run dir's objects now; True when nothing is owed any more (done or given up)."""
        if not owed(folder):
            return True
        try:
            links = self._api.request_output_uploads(execution_id, attempt)
            for upload in links.uploads:
                self._put(upload, folder / f"{upload.stream}.gz")
        except FleetlinkApiError as error:
            if not is_transient(error):
                log.warning("complete output of %s refused (%s); kept inline only", execution_id, error)
                self._done(folder, f"refused: {error.status} {error.code}")
                return True
            return self._failed(folder, execution_id, error, error.retry_after_s)
        except (FleetlinkClientError, httpx.HTTPError, OSError) as error:
            return self._failed(folder, execution_id, error, None)
        self._done(folder, "uploaded")
        for stream in STREAMS:  # the supervisor's files stay until the run dir is pruned
            (folder / f"{stream}.gz").unlink(missing_ok=True)
        return True

    def _failed(self, folder: Path, execution_id: str, error: Exception, retry_after_s: float | None) -> bool:
        failures = self._failures.get(folder.name, (0, 0.0))[0] + 1
        if self._age_s(folder) > GIVE_UP_AFTER_S:
            log.warning("complete output of %s not uploaded in 24 h (%s); given up", execution_id, error)
            self._done(folder, f"given up: {error}")
            return True
        wait_s = self._backoff.delay_s(failures, retry_after_s)
        self._failures[folder.name] = (failures, self._clock() + wait_s)
        log.info("uploading the output of %s failed (%s); retrying in %.0f s", execution_id, error, wait_s)
        return False

    @staticmethod
    def _age_s(folder: Path) -> float:
        try:
            return time.time() - (folder / OBJECTS_FILE).stat().st_mtime
        except OSError:
            return 0.0

    def _done(self, folder: Path, how: str) -> None:
        self._failures.pop(folder.name, None)
        _write(folder / DONE_FILE, json.dumps({"result": how}).encode())
