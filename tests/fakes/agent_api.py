"""An in-memory stand-in for the server, as the agent's task runner sees it (heartbeat, claim, result).

It follows docs/tasks-api.md closely enough for the runner: queued executions are handed out by
claim, ``cancel`` names executions to stop until their result arrives, and a result for a cancelled
execution is recorded as ``cancelled``. Tests queue work, inject failures and wait for results.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetlink.client.http import FleetlinkApiError, FleetlinkClientError
from fleetlink.contract.agents import HeartbeatAck
from fleetlink.contract.tasks import Claimed, Lease, ResultRecorded, ResultReport
from fleetlink.core.tasks.output_objects import ObjectUpload, OutputUploads

#: Guards against a hung test; never an assertion about speed.
WAIT_S = 30.0


def api_error(status: int, code: str = "error", detail: str = "") -> FleetlinkApiError:
    """The error the real client raises for a problem answer."""
    return FleetlinkApiError(
        status, {"type": f"urn:fleetlink:problem:{code}", "title": code, "status": status, "detail": detail}
    )


@dataclass
class FakeAgentApi:
    """Implements the calls TaskRunner makes; everything it is sent is kept for assertions."""

    interval_s: int = 1
    queued: list[Lease] = field(default_factory=list)
    #: Execution ids answered in ``cancel`` until their result arrives.
    cancelling: set[str] = field(default_factory=set)
    #: Every result body received, per execution id, in order.
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    heartbeats: list[list[str]] = field(default_factory=list)
    #: Every live output chunk received, per execution id: (attempt, seq, parts).
    chunks: dict[str, list[tuple[int, int, list[dict[str, str]]]]] = field(default_factory=dict)
    #: Errors to raise from the next report_result calls, first one first.
    report_errors: list[FleetlinkClientError] = field(default_factory=list)
    #: Objects uploaded by presigned link: (execution id, attempt, stream) -> the object's bytes.
    uploaded: dict[tuple[str, int, str], bytes] = field(default_factory=dict)
    #: Errors to raise from the next uploads (the bucket failing), first one first.
    upload_errors: list[Exception] = field(default_factory=list)
    #: Errors to raise from the next heartbeat calls, first one first.
    heartbeat_errors: list[FleetlinkClientError] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: threading.Condition = field(default_factory=threading.Condition)

    # --- what tests do ---

    def queue(
        self,
        command: str | None = None,
        *,
        type: str = "shell",
        input: dict[str, Any] | None = None,
        timeout_seconds: int = 30,
        attempt: int = 1,
        execution_id: str | None = None,
    ) -> str:
        """Queue one execution for the agent; returns its id."""
        number = next(self._ids)
        lease = Lease(
            execution_id=execution_id or f"exe_{number:04d}",
            task_id=f"tsk_{number:04d}",
            attempt=attempt,
            type=type,
            command=command,
            input=input,
            timeout_seconds=timeout_seconds,
            priority=0,
            lease_expires_at=None,
        )
        with self._changed:
            self.queued.append(lease)
        return lease.execution_id

    def cancel(self, execution_id: str) -> None:
        with self._changed:
            self.cancelling.add(execution_id)

    def result(self, execution_id: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """The first result reported for ``execution_id``, waiting for it up to ``timeout_s``."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: execution_id in self.results, timeout_s)
            assert arrived, f"no result for {execution_id} within {timeout_s} s"
            return self.results[execution_id][0]

    # --- the API ---

    def heartbeat(
        self,
        agent_id: str,
        status: str | None = None,
        metrics: Mapping[str, float] | None = None,
        running_executions: list[str] | None = None,
    ) -> HeartbeatAck:
        with self._changed:
            if self.heartbeat_errors:
                raise self.heartbeat_errors.pop(0)
            running = list(running_executions or [])
            self.heartbeats.append(running)
            self._changed.notify_all()
            return HeartbeatAck(
                server_time=int(time.time() * 1000),
                heartbeat_interval_s=self.interval_s,
                pending_executions=len(self.queued),
                tunnels_version=0,
                renewed=[e for e in running if e not in self.cancelling],
                cancel=[e for e in running if e in self.cancelling],
            )

    def claim(self, agent_id: str, max: int = 1, running_executions: list[str] | None = None) -> Claimed:
        with self._changed:
            handed, self.queued = self.queued[:max], self.queued[max:]
            running = list(running_executions or [])
            return Claimed(
                executions=handed,
                renewed=[e for e in running if e not in self.cancelling],
                cancel=[e for e in running if e in self.cancelling],
            )

    def report_result(self, execution_id: str, report: ResultReport) -> ResultRecorded:
        with self._changed:
            if self.report_errors:
                raise self.report_errors.pop(0)
            body = report.model_dump(mode="json")
            self.results.setdefault(execution_id, []).append(body)
            recorded = "cancelled" if execution_id in self.cancelling else report.status
            self.cancelling.discard(execution_id)
            self._changed.notify_all()
            return ResultRecorded.model_validate(
                {"execution_id": execution_id, "attempt": report.attempt, "status": recorded}
            )

    def append_output(
        self, execution_id: str, *, attempt: int, seq: int, parts: list[dict[str, str]]
    ) -> dict[str, Any]:
        """Keeps each chunk as sent: (attempt, seq, parts)."""
        with self._changed:
            self.chunks.setdefault(execution_id, []).append((attempt, seq, parts))
            self._changed.notify_all()
            return {"execution_id": execution_id, "attempt": attempt, "seq": seq, "status": "applied"}

    def request_output_uploads(self, execution_id: str, attempt: int) -> OutputUploads:
        """Links for the objects the attempt's last reported result declared (409 when none)."""
        with self._changed:
            reported = [r for r in self.results.get(execution_id, []) if r["attempt"] == attempt]
            if not reported:
                raise api_error(409, "attempt-not-reported")
            declared = reported[-1]["output_objects"] or []
            if not declared:
                raise api_error(409, "no-output-objects")
            uploads = [
                ObjectUpload(
                    stream=found["stream"],
                    key=f"outputs/{execution_id}/{attempt:04d}/{found['stream']}.gz",
                    url=f"memory://{execution_id}/{attempt}/{found['stream']}",
                    headers={"Content-Length": str(found["size"])},
                    size=found["size"],
                    sha256=found["sha256"],
                )
                for found in declared
            ]
            return OutputUploads(execution_id=execution_id, attempt=attempt, uploads=uploads, expires_at=0)

    def put_object(self, upload: ObjectUpload, path: Path) -> None:
        """The bucket's side of a presigned PUT: keeps the bytes (or fails as told)."""
        with self._changed:
            if self.upload_errors:
                raise self.upload_errors.pop(0)
            _, execution_id, attempt, stream = upload.url.replace("://", "/").split("/")
            data = path.read_bytes()
            assert len(data) == upload.size, "a PUT of other than the signed size is refused"
            self.uploaded[(execution_id, int(attempt), stream)] = data
            self._changed.notify_all()
