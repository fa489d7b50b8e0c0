"""The sync worker: carries the outbox to the relay, inside ``fleetlink agent run`` or on its own.

Each round sends the head of the outbox: one record through ``/relay/immediate``, a backlog
through ``/relay/batch`` (at most 500 records and 5 MiB). Answers settle in one local
transaction: ``applied``, ``duplicate`` and ``stale`` remove the entry, ``rejected`` turns it into
a dead letter (shown in health, never retried), ``retry`` keeps it. When the cloud cannot be
reached, or throttles, rounds back off exponentially with jitter (at least the server's
``Retry-After``), so an outage costs a bounded number of requests however much is written
meanwhile. A batch refused as a whole (400, 413, 422) is sent again record by record, so one bad
record ends as one dead letter and never blocks the queue.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from fleetlink.agent.daemon import BaseService
from fleetlink.agent.db import now_ms
from fleetlink.agent.relay.api import RelayApi
from fleetlink.agent.relay.store import OutboxEntry, RecordStore, SyncHealth
from fleetlink.client.backoff import Backoff
from fleetlink.client.http import FleetlinkApiError, FleetlinkClientError
from fleetlink.contract.agents import HeartbeatAck
from fleetlink.contract.relay import RecordResult, RecordStatus, RelayRecord
from fleetlink.core.relay.records import MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_FUTURE_SKEW_MS

log = logging.getLogger(__name__)

#: Statuses with which the server refuses a request for its content: resending it unchanged is futile.
REFUSED_STATUSES = frozenset({400, 413, 422})
#: Room left in a batch body for ``{"records":[...]}`` and the commas.
BATCH_ENVELOPE_BYTES = 16 * 1024


def to_wire(entry: OutboxEntry) -> RelayRecord:
    """The outbox entry as the record sent (built without re-validating what was checked at write)."""
    fields: dict[str, Any] = {
        "record_id": entry.record_id,
        "collection": entry.collection,
        "key": entry.key,
        "hlc": entry.hlc,
    }
    if entry.value_json is None:
        fields["deleted"] = True
    else:
        fields["value"] = json.loads(entry.value_json)
    return RelayRecord.model_construct(**fields)


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


class RelayService(BaseService):
    """The ``relay`` service of ``fleetlink agent run``; :meth:`run` runs it alone."""

    name = "relay"

    def __init__(
        self,
        store: RecordStore,
        api: RelayApi,
        *,
        clock: Callable[[], int] = now_ms,
        backoff: Backoff | None = None,
        idle_interval_s: float = 0.5,
        max_batch_records: int = MAX_BATCH_RECORDS,
        max_batch_bytes: int = MAX_BATCH_BYTES - BATCH_ENVELOPE_BYTES,
    ) -> None:
        super().__init__()
        if not 1 <= max_batch_records <= MAX_BATCH_RECORDS:
            raise ValueError(f"max_batch_records must be 1-{MAX_BATCH_RECORDS}")
        self.store = store
        self.api = api
        self._clock = clock
        self._backoff = backoff or Backoff(base_s=1.0, max_s=60.0)
        self._idle_interval_s = idle_interval_s
        self._max_batch_records = max_batch_records
        self._max_batch_bytes = max_batch_bytes
        self._failures = 0
        self._not_before = 0
        #: Entries up to this outbox seq go one by one (a batch holding them was refused).
        self._one_by_one_until = 0
        #: Server time minus local time, from the last heartbeat answer.
        self.server_offset_ms: int | None = None
        self._wake = threading.Event()
        self._stopped = threading.Event()
        #: Requests sent to the relay (immediate and batch), for diagnostics.
        self.requests = 0

    # --- the daemon's Service interface ---

    def start(self) -> None:
        """Pick up the failure count and the next attempt time a previous run left, and listen for writes."""
        health = self.store.health()
        self._failures = health.consecutive_failures
        self._not_before = health.next_attempt_at or 0
        self.store.on_write(self.wake)

    def step(self) -> float:
        """One round: send the head of the outbox unless backing off; seconds until the next round."""
        now = self._clock()
        if now < self._not_before:
            return (self._not_before - now) / 1000
        entries = self.store.pending(limit=self._max_batch_records, max_bytes=self._max_batch_bytes)
        if not entries:
            return self._idle_interval_s
        if entries[0].seq <= self._one_by_one_until:
            entries = entries[:1]
        try:
            self.requests += 1
            if len(entries) == 1:
                results = [self.api.immediate(to_wire(entries[0]))]
            else:
                results = self.api.batch([to_wire(entry) for entry in entries])
        except FleetlinkApiError as exc:
            if exc.status in REFUSED_STATUSES:
                return self._refused(entries, exc)
            return self._failed(_describe(exc), getattr(exc, "retry_after_s", None))
        except FleetlinkClientError as exc:
            return self._failed(_describe(exc), None)
        return self._settle(entries, results)

    def on_heartbeat(self, ack: HeartbeatAck) -> None:
        """Note how far the local clock is from the server's (hlcs too far ahead would be rejected)."""
        self.server_offset_ms = ack.server_time - self._clock()
        if -self.server_offset_ms > MAX_FUTURE_SKEW_MS:
            log.warning(
                "relay: this clock is %.0f s ahead of the server's; new records will be rejected",
                -self.server_offset_ms / 1000,
            )

    def heartbeat_metrics(self) -> dict[str, float]:
        """Sync health as heartbeat metrics (``relay_*``), so operators see lagging nodes."""
        return health_metrics(self.store.health(), self.server_offset_ms)

    def stop(self, *, urgent: bool = False) -> None:
        """Stop :meth:`run`; nothing is lost (the outbox is on disk) however urgent."""
        self._stopped.set()
        self._wake.set()

    # --- running alone ---

    def wake(self) -> None:
        """Start the next round now (a write was queued); a backoff in progress is still honoured."""
        self._wake.set()
        super().wake()

    def run(self, stop: threading.Event | None = None) -> None:
        """Run rounds until ``stop`` (or :meth:`stop`) is set."""
        self.start()
        while not self._stopped.is_set() and not (stop is not None and stop.is_set()):
            delay = self.step()
            if delay > 0:
                self._wake.wait(delay)
            self._wake.clear()

    def drain(self, *, max_rounds: int = 10_000, sleep: Callable[[float], None] | None = None) -> bool:
        """Run rounds until the outbox is empty (True) or ``max_rounds`` are spent (False)."""
        wait = sleep or self._stopped.wait
        for _ in range(max_rounds):
            if not self.store.has_pending():
                return True
            delay = self.step()
            if delay > 0 and self.store.has_pending():
                wait(delay)
        return not self.store.has_pending()

    # --- outcomes of a round ---

    def _settle(self, entries: Sequence[OutboxEntry], results: Sequence[RecordResult]) -> float:
        pairs = list(zip(entries, results, strict=False))
        if len(results) != len(entries) or any(
            entry.record_id != result.record_id for entry, result in pairs
        ):
            return self._failed(
                f"the relay's {len(results)} results do not match the {len(entries)} records", None
            )
        acknowledged = [entry for entry, result in pairs if result.status.acknowledges]
        rejected = {
            entry: result.error or "rejected"
            for entry, result in pairs
            if result.status is RecordStatus.REJECTED
        }
        retry = {
            entry: result.error or "retry" for entry, result in pairs if result.status is RecordStatus.RETRY
        }
        error = f"the relay asked to retry {len(retry)} of {len(results)} records" if retry else None
        delay = self._schedule_retry(None) if error else 0.0
        self.store.settle(
            acknowledged=acknowledged,
            rejected=rejected,
            retry=retry,
            at=self._clock(),
            error=error,
            next_attempt_at=self._not_before if error else None,
        )
        for entry, reason in rejected.items():
            log.warning("relay: record %s rejected (%s); kept as a dead letter", entry.record_id, reason)
        if error:
            return delay
        return self._next_round()

    def _refused(self, entries: Sequence[OutboxEntry], error: FleetlinkApiError) -> float:
        if len(entries) > 1:
            # Find the culprit: send these records one at a time.
            self._one_by_one_until = entries[-1].seq
            return 0.0
        reason = f"{error.status} {error.title}" + (f": {error.detail}" if error.detail else "")
        self.store.settle(rejected={entries[0]: reason}, at=self._clock())
        log.warning("relay: record %s refused (%s); kept as a dead letter", entries[0].record_id, reason)
        return self._next_round()

    def _next_round(self) -> float:
        self._failures, self._not_before = 0, 0
        return 0.0 if self.store.has_pending() else self._idle_interval_s

    def _schedule_retry(self, retry_after_s: float | None) -> float:
        self._failures += 1
        delay = self._backoff.delay_s(self._failures, retry_after_s)
        self._not_before = self._clock() + int(delay * 1000)
        return delay

    def _failed(self, error: str, retry_after_s: float | None) -> float:
        delay = self._schedule_retry(retry_after_s)
        self.store.note_round(error=error, at=self._clock(), next_attempt_at=self._not_before)
        log.info("relay: round failed (%s); next attempt in %.1f s", error, delay)
        return delay


def health_metrics(health: SyncHealth, server_offset_ms: int | None = None) -> dict[str, float]:
    """``relay_*`` metrics for the heartbeat (ages in seconds; unknown ones left out)."""
    metrics: dict[str, float] = {
        "relay_queue_size": float(health.queue_size),
        "relay_bytes_pending": float(health.bytes_pending),
        "relay_oldest_age_s": health.oldest_pending_age_s or 0.0,
        "relay_dead_letters": float(health.dead_letters),
        "relay_failures": float(health.consecutive_failures),
    }
    if health.last_success_at is not None:
        metrics["relay_last_success_age_s"] = max(0.0, (health.checked_at - health.last_success_at) / 1000)
    if server_offset_ms is not None:
        metrics["relay_clock_offset_s"] = server_offset_ms / 1000
    return metrics
