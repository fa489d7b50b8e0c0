"""An in-memory relay cloud that applies the core merge rule, and a node's RelayApi onto it.

``FakeRelayCloud.apply_batch(node_id, records)`` is what the relay function does per batch; tests
that are about the rule take it through a fixture, so the same tests can later drive the real
handler. ``FakeRelayApi`` adds what the network does to one node: errors, lost answers, throttling.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fleetlink.agent.relay.api import RelayApiError
from fleetlink.client.http import FleetlinkClientError, FleetlinkConnectionError
from fleetlink.contract.relay import (
    MAX_BATCH_RECORDS,
    QueryAnswer,
    QueryRecord,
    QueryRequest,
    RecordResult,
    RecordStatus,
    RelayRecord,
)
from fleetlink.core.relay.merge import Outcome, StoredRecord, merge
from fleetlink.core.relay.records import InvalidRecord

#: (node_id, collection, key)
ItemKey = tuple[str, str, str]


def relay_error(
    status: int, code: str = "error", detail: str = "", retry_after_s: float | None = None
) -> RelayApiError:
    """The error the real client raises for a problem answer."""
    problem = {"type": f"urn:fleetlink:problem:{code}", "title": code, "status": status, "detail": detail}
    return RelayApiError(status, problem, retry_after_s)


@dataclass
class FakeRelayCloud:
    """The cloud side of relay sync, in memory: per (node, collection, key) the highest-hlc record."""

    clock: Callable[[], int]
    items: dict[ItemKey, StoredRecord] = field(default_factory=dict)
    #: How often each record_id was answered each outcome (``applied`` more than once is a bug).
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def apply_batch(self, node_id: str, records: Sequence[RelayRecord]) -> list[RecordResult]:
        """Apply each record on its own; one result per record, in order."""
        now = self.clock()
        results = []
        with self._lock:
            for wire in records:
                try:
                    record = wire.to_core()
                except InvalidRecord as exc:
                    results.append(
                        RecordResult(record_id=wire.record_id, status=RecordStatus.REJECTED, error=str(exc))
                    )
                    continue
                item_key = (node_id, record.collection, record.key)
                decision, kept = merge(self.items.get(item_key), node_id, record, now)
                if decision.outcome is Outcome.APPLIED and kept is not None:
                    self.items[item_key] = kept
                self.outcomes[(record.record_id, decision.outcome.value)] += 1
                results.append(
                    RecordResult(
                        record_id=record.record_id,
                        status=RecordStatus(decision.outcome.value),
                        error=decision.reason,
                    )
                )
        return results

    def state(self) -> dict[ItemKey, tuple[str, str, str | None]]:
        """Every kept record as (record_id, hlc, value JSON or None for a tombstone)."""
        with self._lock:
            return {key: (item.record_id, str(item.hlc), item.value_json) for key, item in self.items.items()}

    def applied_twice(self) -> list[str]:
        return [
            record_id for (record_id, outcome), n in self.outcomes.items() if outcome == "applied" and n > 1
        ]

    def query(self, request: QueryRequest) -> QueryAnswer:
        """Matching records in (node, key) order; the cursor is the index of the next one (tests only)."""
        with self._lock:
            matching = sorted(
                (item for item in self.items.values() if _matches(item, request)),
                key=lambda item: (item.node_id, item.key),
            )
        start = int(request.cursor or 0)
        page = matching[start : start + request.limit]
        cursor = str(start + request.limit) if start + request.limit < len(matching) else None
        return QueryAnswer(
            records=[
                QueryRecord(
                    node_id=item.node_id,
                    collection=item.collection,
                    key=item.key,
                    value=None if item.deleted else _json(item.value_json),
                    deleted=item.deleted,
                    hlc=str(item.hlc),
                    updated_at=item.updated_at,
                )
                for item in page
            ],
            cursor=cursor,
        )


def _json(text: str | None) -> object:
    return None if text is None else json.loads(text)


def _matches(item: StoredRecord, request: QueryRequest) -> bool:
    return (
        item.collection == request.collection
        and (request.node_id is None or item.node_id == request.node_id)
        and (request.key_prefix is None or item.key.startswith(request.key_prefix))
        and (request.updated_since is None or item.updated_at > request.updated_since)
        and (request.include_deleted or not item.deleted)
    )


@dataclass
class FakeRelayApi:
    """One node's view of the cloud, with faults tests inject; every call is recorded."""

    cloud: FakeRelayCloud
    node_id: str
    #: Errors raised by the next calls, first one first (before the cloud sees anything).
    errors: list[FleetlinkClientError] = field(default_factory=list)
    #: Number of next calls whose answer is lost after the cloud applied them.
    lose_answers: int = 0
    #: Record ids answered ``retry`` once (the cloud was throttled for them).
    throttle_once: set[str] = field(default_factory=set)
    #: Record ids that make a whole batch fail with 422 (a shape the server refuses).
    poison: set[str] = field(default_factory=set)
    #: ("immediate" | "batch" | "query", record ids) per call that reached the cloud or failed.
    calls: list[tuple[str, list[str]]] = field(default_factory=list)

    def _call(self, kind: str, records: Sequence[RelayRecord]) -> list[RecordResult]:
        self.calls.append((kind, [record.record_id for record in records]))
        if self.errors:
            raise self.errors.pop(0)
        if self.poison.intersection(record.record_id for record in records):
            raise relay_error(422, "invalid-input", "records[0].key: invalid")
        throttled = {record.record_id for record in records} & self.throttle_once
        self.throttle_once -= throttled
        applied = iter(
            self.cloud.apply_batch(self.node_id, [r for r in records if r.record_id not in throttled])
        )
        results = [
            RecordResult(record_id=r.record_id, status=RecordStatus.RETRY, error="throttled")
            if r.record_id in throttled
            else next(applied)
            for r in records
        ]
        if self.lose_answers:
            self.lose_answers -= 1
            raise FleetlinkConnectionError("connection reset after the request was sent")
        return results

    def immediate(self, record: RelayRecord) -> RecordResult:
        return self._call("immediate", [record])[0]

    def batch(self, records: Sequence[RelayRecord]) -> list[RecordResult]:
        if not 1 <= len(records) <= MAX_BATCH_RECORDS:
            raise relay_error(422, "invalid-input", f"{len(records)} records: 1-{MAX_BATCH_RECORDS} allowed")
        return self._call("batch", records)

    def query(self, request: QueryRequest) -> QueryAnswer:
        self.calls.append(("query", []))
        return self.cloud.query(request)
