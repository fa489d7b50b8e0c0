"""Complete output in the output bucket: presigned links for one attempt's objects, and nothing else.

An agent whose output outgrew the inline copy reports the attempt's result with the complete
streams it holds (``ExecutionResult.output_objects``: each gzip object's size and SHA-256), then asks
for upload links (:meth:`OutputObjectsService.uploads`): one presigned PUT per declared object, of
exactly its size, to the one key of that execution, attempt and stream. The report never waits for
an upload. Operators get a presigned GET (:meth:`OutputObjectsService.download`) once the object
is there, and check the SHA-256 the execution recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import Field

from fleetlink.core.access import Caller, require_own
from fleetlink.core.clock import Clock
from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.entities import Strict
from fleetlink.core.errors import Conflict, NotFound
from fleetlink.core.numbers import StrictInt
from fleetlink.core.tasks.output import Attempt, OutputService, current_attempt

#: An upload link lasts this long (the agent asks again for a retry after it).
UPLOAD_LINK_S = 900
#: A download link lasts this long.
DOWNLOAD_LINK_S = 300
#: Links are handed out for an attempt this long after it ended; then its output stays inline only.
UPLOAD_WINDOW_MS = 24 * 3600 * 1000

ObjectKeyOf = Callable[[str, int, str], str]


class RequestUploads(Strict):
    """Which reported attempt's declared output objects to upload."""

    attempt: StrictInt = Field(ge=1, le=1000)


class ObjectUpload(DeferredModel):
    stream: Literal["stdout", "stderr"]
    key: str = Field(description="The object's key in the output bucket")
    url: str = Field(description="Presigned PUT of exactly `size` bytes to that one object")
    headers: dict[str, str] = Field(description="Headers the PUT must carry as given")
    size: int
    sha256: str


class OutputUploads(DeferredModel):
    execution_id: str
    attempt: int
    uploads: list[ObjectUpload]
    expires_at: int = Field(description="The links work until then (epoch ms)")


class OutputDownload(DeferredModel):
    execution_id: str
    attempt: int
    stream: Literal["stdout", "stderr"]
    key: str
    url: str = Field(description="Presigned GET of the object (gzip), short-lived")
    size: int = Field(description="The object's bytes (compressed)")
    sha256: str = Field(description="SHA-256 of the object as recorded by the agent's report")
    bytes: int = Field(description="The stream's bytes before compression")
    expires_at: int


class OutputBucket(Protocol):
    """Presigned links to single objects (adapter: fleetlink.store.buckets)."""

    def upload_url(self, object_key: str, size: int, expires_s: int) -> tuple[str, dict[str, str]]: ...

    def download_url(self, object_key: str, expires_s: int) -> str: ...

    def object_size(self, object_key: str) -> int | None: ...


@dataclass(frozen=True)
class OutputObjectsService:
    output: OutputService
    bucket: OutputBucket
    key_of: ObjectKeyOf
    clock: Clock

    def _reported(self, caller: Caller, execution_id: str, attempt: int) -> Attempt:
        """An attempt of the caller's execution it reported a result for (ended attempts are kept)."""
        execution, ended = self.output.attempts(execution_id)
        require_own(caller, execution.agent_id)
        for found in ended:
            if found.attempt == attempt:
                return found
        if attempt > execution.attempt:
            raise NotFound(f"execution {execution_id} has no attempt {attempt}", code="attempt-not-found")
        raise Conflict(
            f"attempt {attempt} has no result yet: report it (with its output_objects) first",
            code="attempt-not-reported",
        )

    def _attempt(self, execution_id: str, attempt: int | None) -> Attempt:
        execution, ended = self.output.attempts(execution_id)
        by_number = {found.attempt: found for found in ended}
        chosen = attempt or (max(by_number) if by_number else execution.attempt)
        if chosen in by_number:
            return by_number[chosen]
        if chosen != execution.attempt:
            raise NotFound(f"execution {execution_id} has no attempt {chosen}", code="attempt-not-found")
        return current_attempt(execution)

    def uploads(self, caller: Caller, execution_id: str, command: RequestUploads) -> OutputUploads:
        """Upload links for the objects the attempt's result declared (again on every call)."""
        attempt = self._reported(caller, execution_id, command.attempt)
        if not attempt.output_objects:
            raise Conflict(
                f"the result of attempt {attempt.attempt} declared no output objects",
                code="no-output-objects",
            )
        now = self.clock.now_ms()
        if (attempt.finished_at or 0) + UPLOAD_WINDOW_MS < now:
            raise Conflict(
                f"attempt {attempt.attempt} ended over {UPLOAD_WINDOW_MS // 3_600_000} h ago: "
                "its output is kept inline only",
                code="upload-window-closed",
            )
        uploads = []
        for declared in attempt.output_objects:
            key = self.key_of(execution_id, attempt.attempt, declared.stream)
            url, headers = self.bucket.upload_url(key, declared.size, UPLOAD_LINK_S)
            uploads.append(
                ObjectUpload(
                    stream=declared.stream,
                    key=key,
                    url=url,
                    headers=headers,
                    size=declared.size,
                    sha256=declared.sha256,
                )
            )
        return OutputUploads(
            execution_id=execution_id,
            attempt=attempt.attempt,
            uploads=uploads,
            expires_at=now + UPLOAD_LINK_S * 1000,
        )

    def download(
        self, execution_id: str, stream: Literal["stdout", "stderr"], attempt: int | None
    ) -> OutputDownload:
        """A download link for an attempt's complete stream (by default the last that ended)."""
        chosen = self._attempt(execution_id, attempt)
        found = next((o for o in chosen.output_objects or () if o.stream == stream), None)
        if found is None:
            raise NotFound(
                f"attempt {chosen.attempt} of {execution_id} has no complete {stream} in the output "
                "bucket (its output fit inline, or the agent kept none): read it with tasks show",
                code="output-object-not-found",
            )
        key = self.key_of(execution_id, chosen.attempt, stream)
        if self.bucket.object_size(key) != found.size:
            raise NotFound(
                f"the {stream} of attempt {chosen.attempt} is not uploaded yet: the agent uploads it "
                "after its result, retry shortly",
                code="output-not-uploaded",
            )
        return OutputDownload(
            execution_id=execution_id,
            attempt=chosen.attempt,
            stream=stream,
            key=key,
            url=self.bucket.download_url(key, DOWNLOAD_LINK_S),
            size=found.size,
            sha256=found.sha256,
            bytes=found.bytes,
            expires_at=self.clock.now_ms() + DOWNLOAD_LINK_S * 1000,
        )
