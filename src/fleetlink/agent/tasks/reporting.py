"""Results reaching the server: each finished attempt reported (one :class:`ResultReport`, the same
on every resend), then its complete output uploaded (:mod:`fleetlink.agent.tasks.uploads`).

A transient failure leaves the rest owed for the next round; an answer the server will never change
(409: it has moved on, 404, 403, 422) marks the execution reported all the same, with a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from fleetlink.agent.tasks.execution import clip_utf8
from fleetlink.agent.tasks.store import AgentStore, ExecutionRecord, RowStatus
from fleetlink.agent.tasks.uploads import OutputUploader, UploadsApi, declared, owed
from fleetlink.client.http import FleetlinkApiError, FleetlinkClientError, is_transient
from fleetlink.contract.tasks import ResultRecorded, ResultReport

log = logging.getLogger(__name__)


class ReportsApi(UploadsApi, Protocol):
    def report_result(self, execution_id: str, report: ResultReport) -> ResultRecorded: ...


@dataclass(frozen=True)
class ResultReporter:
    """Reports finished attempts from the local store, then uploads the complete output owed."""

    client: ReportsApi
    store: AgentStore
    _: KW_ONLY
    send_output_bytes: int
    runs_dir: Path
    on_reported: Callable[[ExecutionRecord, str], None]
    uploader: OutputUploader

    def report_pending(self) -> int:
        """Report every finished, unreported attempt, oldest first, then upload what is owed; how
        many results are still owed (it stops at the first transient failure)."""
        owed_results = self.store.unreported()
        for index, record in enumerate(owed_results):
            try:
                report = self.result_report(record)
            except ValidationError as error:  # what the server would answer 422: never sendable
                log.warning("the result of %s cannot be sent: %s", record.execution_id, error)
                self.store.mark_reported(record.execution_id, record.attempt, server_status="refused:422")
                self.on_reported(record, "refused: not a valid result")
                continue
            try:
                answer = self.client.report_result(record.execution_id, report)
            except FleetlinkApiError as error:
                if is_transient(error):
                    log.warning("reporting %s failed (%s); will retry", record.execution_id, error)
                    return len(owed_results) - index
                log.warning("the server refused the result of %s: %s", record.execution_id, error)
                self.store.mark_reported(
                    record.execution_id, record.attempt, server_status=f"refused:{error.status}"
                )
                self.on_reported(record, f"refused: {error.status} {error.title}")
                continue
            except FleetlinkClientError as error:
                log.warning("reporting %s failed (%s); will retry", record.execution_id, error)
                return len(owed_results) - index
            self.store.mark_reported(record.execution_id, record.attempt, server_status=answer.status.value)
            self.on_reported(record, answer.status.value)
        self.upload_owed()
        return 0

    def result_report(self, record: ExecutionRecord) -> ResultReport:
        """The result as sent: the same every time for one attempt, so a resend is recognised."""
        result = record.result()
        started_at = result.started_at if result.started_at is not None else result.finished_at
        output, output_cut = clip_utf8(result.output, self.send_output_bytes)
        stderr, stderr_cut = clip_utf8(result.stderr, self.send_output_bytes)
        output_truncated = output_cut or result.output_truncated
        stderr_truncated = stderr_cut or result.stderr_truncated
        return ResultReport(
            attempt=record.attempt,
            status=result.status.value,
            started_at=started_at,
            finished_at=max(result.finished_at, started_at),
            exit_code=result.exit_code,
            output=output or None,
            output_truncated=output_truncated,
            output_bytes=(result.output_bytes or len(result.output.encode())) if output_truncated else None,
            error=result.error,
            # stderr only when there is some: a result without it reads as before
            stderr=stderr or None,
            stderr_truncated=bool(stderr) and stderr_truncated,
            stderr_bytes=(result.stderr_bytes or len(result.stderr.encode()))
            if stderr and stderr_truncated
            else None,
            output_objects=declared(self._run_dir(record)) or None,
        )

    def _run_dir(self, record: ExecutionRecord) -> Path:
        return self.runs_dir / f"{record.execution_id}-{record.attempt}"

    def upload_owed(self) -> int:
        """Upload the complete output of reported attempts (each when its back-off allows); how many
        run dirs still owe some."""
        if not self.runs_dir.is_dir():
            return 0
        left = 0
        for folder in sorted(self.runs_dir.iterdir()):
            if not owed(folder):
                continue
            execution_id, _, attempt = folder.name.rpartition("-")
            record = self.store.get(execution_id, int(attempt)) if attempt.isdigit() else None
            if record is None or record.status is not RowStatus.REPORTED:
                left += record is not None
                continue
            if not self.uploader.due(folder) or not self.uploader.upload(
                folder, execution_id, record.attempt
            ):
                left += 1
        return left
