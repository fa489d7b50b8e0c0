"""The cloud side of relay sync: apply a node's records, answer queries, keep read policies.

Each record of a request is decided on its own (a batch is not a transaction): rule violations and
hlcs too far ahead are ``rejected``, the rest go to the store as one conditional write each (the
merge rule: a higher hlc replaces), written a few at a time in parallel. A write the store could not
make now (throttled, unavailable) is answered ``retry``: the node sends it again, nothing is lost.
The node's sync state is updated once per request with what the request did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fleetlink.core.audit import AuditRecord, changes_between
from fleetlink.core.clock import Clock
from fleetlink.core.entities import Page
from fleetlink.core.errors import Forbidden, Throttled, Unavailable
from fleetlink.core.relay.merge import (
    Outcome,
    StoredRecord,
    classify_kept,
    hlc_too_far_ahead,
    stored_from,
)
from fleetlink.core.relay.policy import Readers, may_read
from fleetlink.core.relay.ports import NodeSync, RecordQuery, RelayRepository, SyncTally
from fleetlink.core.relay.records import MAX_FUTURE_SKEW_MS, Record

log = logging.getLogger(__name__)

#: Records of one request written at once (bounded parallelism; a Lambda has few connections).
WRITERS = 8


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record refused before it reached the store (a broken rule), with the reason."""

    record_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Incoming:
    """A record as a node sent it: checked (or refused), with the node it claims to be of, if any."""

    claimed_node_id: str | None
    item: Record | Rejection


#: Why a record claiming another node is refused (a node writes only its own records).
NOT_YOUR_RECORD = "not-your-record: a node writes only its own records"


@dataclass(frozen=True, slots=True)
class RecordAnswer:
    record_id: str
    outcome: Outcome
    error: str | None = None


class RecordService:
    """Applies records of the signing node and serves queries, over a :class:`RelayRepository`."""

    def __init__(self, repository: RelayRepository, clock: Clock, *, writers: int = WRITERS) -> None:
        self.repository = repository
        self.clock = clock
        self._writers = writers
        self._pool: ThreadPoolExecutor | None = None

    def _map_groups(
        self, work: Callable[[Record], RecordAnswer], groups: Sequence[Sequence[Record]]
    ) -> list[list[RecordAnswer]]:
        """``work`` on every record: the groups in parallel, each group's records in order."""

        def serially(group: Sequence[Record]) -> list[RecordAnswer]:
            return [work(record) for record in group]

        if len(groups) <= 1 or self._writers <= 1:
            return [serially(group) for group in groups]
        if self._pool is None:  # one pool per container, created on the first batch
            self._pool = ThreadPoolExecutor(self._writers, thread_name_prefix="relay-writer")
        return list(self._pool.map(serially, groups))

    def apply(self, node_id: str, incoming: Sequence[Record | Rejection | Incoming]) -> list[RecordAnswer]:
        """One answer per record of ``node_id``, in order; the node's sync state counts them. A record
        claiming another node is refused (``not-your-record``)."""
        now = self.clock.now_ms()
        answers: list[RecordAnswer | None] = [None] * len(incoming)
        to_write: list[tuple[int, Record]] = []
        for index, sent in enumerate(incoming):
            item = _owned(node_id, sent) if isinstance(sent, Incoming) else sent
            if isinstance(item, Rejection):
                answers[index] = RecordAnswer(item.record_id, Outcome.REJECTED, item.reason)
            elif hlc_too_far_ahead(item.hlc, now):
                reason = f"hlc-ahead: hlc is more than {MAX_FUTURE_SKEW_MS // 1000} s ahead of server time"
                answers[index] = RecordAnswer(item.record_id, Outcome.REJECTED, reason)
            else:
                to_write.append((index, item))
        changes: list[tuple[StoredRecord | None, Record]] = []

        def write(record: Record) -> RecordAnswer:
            try:
                result = self.repository.put_if_newer(stored_from(node_id, record, now))
            except (Throttled, Unavailable) as error:
                return RecordAnswer(record.record_id, Outcome.RETRY, f"{error.code}: {error.detail}")
            if result.applied:
                changes.append((result.previous, record))  # list.append is atomic
                return RecordAnswer(record.record_id, Outcome.APPLIED)
            if result.previous is None:  # the condition failed, so an item exists; be conservative
                return RecordAnswer(record.record_id, Outcome.STALE)
            return RecordAnswer(record.record_id, classify_kept(result.previous, record))

        # records of one key are written in the batch's order (one after another), keys in parallel
        by_key: dict[tuple[str, str], list[tuple[int, Record]]] = {}
        for index, record in to_write:
            by_key.setdefault((record.collection, record.key), []).append((index, record))
        groups = list(by_key.values())
        written = self._map_groups(write, [[record for _, record in group] for group in groups])
        for group, group_answers in zip(groups, written, strict=True):
            for (index, _), answer in zip(group, group_answers, strict=True):
                answers[index] = answer
        final = [answer for answer in answers if answer is not None]
        self._count(node_id, final, changes, now)
        return final

    def _count(
        self,
        node_id: str,
        answers: Sequence[RecordAnswer],
        changes: Sequence[tuple[StoredRecord | None, Record]],
        now: int,
    ) -> None:
        outcomes = [answer.outcome for answer in answers]
        live = sum(_is_live(None if r.deleted else r) - _is_live(p) for p, r in changes)
        tombs = sum(int(r.deleted) - int(p is not None and p.deleted) for p, r in changes)
        tally = SyncTally(
            applied=outcomes.count(Outcome.APPLIED),
            duplicate=outcomes.count(Outcome.DUPLICATE),
            stale=outcomes.count(Outcome.STALE),
            rejected=outcomes.count(Outcome.REJECTED),
            retry=outcomes.count(Outcome.RETRY),
            live_delta=live,
            tombstone_delta=tombs,
            max_applied_hlc=str(max(r.hlc for _, r in changes)) if changes else None,
            collections=frozenset(r.collection for _, r in changes),
        )
        try:
            self.repository.record_sync(node_id, tally, now)
        except (Throttled, Unavailable):
            # The records are stored and answered; only the operator's counters miss this request.
            log.warning("relay: sync state of %s not updated (store busy)", node_id)

    # --- reading ---

    def query(self, query: RecordQuery, *, reader_tags: Mapping[str, str] | None) -> Page[StoredRecord]:
        """A page of records; ``reader_tags`` are an agent's tags (None: an operator, who reads all)."""
        if reader_tags is None:
            return self.repository.query(query, self.clock.now_ms())
        readers = self.repository.readers(query.collection)
        if not may_read(readers, reader_tags):
            # the policy's tags are the operator's, not a secret: the agent learns what it lacks
            wanted = "" if readers == "fleet" else ", ".join(f"{k}={v}" for k, v in sorted(readers.items()))
            raise Forbidden(
                f"collection {query.collection!r} is readable only by agents tagged {wanted}; "
                "an operator sets an agent's tags (fleetlink agents tag AGENT KEY=VALUE)",
                code="collection-restricted",
            )
        return self.repository.query(query, self.clock.now_ms())

    def readers(self, collection: str) -> Readers:
        return self.repository.readers(collection)

    def set_readers(self, collection: str, readers: Readers, *, by: str) -> None:
        now = self.clock.now_ms()
        change = changes_between({"readers": self.repository.readers(collection)}, {"readers": readers})
        audit = AuditRecord.of(by, "collection.readers.set", collection, now, changes=change)
        self.repository.set_readers(collection, readers, by=by, now_ms=now, audit=audit)

    def sync_state(self, node_id: str) -> NodeSync | None:
        return self.repository.sync_state(node_id)


def _is_live(item: Record | None) -> int:
    """1 for a stored value, 0 for nothing or a tombstone."""
    return int(item is not None and not item.deleted)


def _owned(node_id: str, sent: Incoming) -> Record | Rejection:
    if sent.claimed_node_id is not None and sent.claimed_node_id != node_id:
        record_id = sent.item.record_id
        return Rejection(record_id, NOT_YOUR_RECORD)
    return sent.item
