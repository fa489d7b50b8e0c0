"""The merge rule the cloud applies to each incoming record, per (node, collection, key).

The stored record is the one with the highest hlc. An incoming record is

- ``rejected`` when its hlc is more than :data:`MAX_FUTURE_SKEW_MS` ahead of server time;
- ``applied`` when nothing is stored or the stored hlc is lower (the condition the repository
  writes as ``attribute_not_exists(pk) OR hlc < :hlc`` on the canonical hlc string);
- ``duplicate`` when the stored record is this very record (same record_id and hlc);
- ``stale`` otherwise (a lower or equal hlc: an older write, or a superseded one sent again).

Every outcome but ``rejected`` acknowledges the record. Because the rule only keeps a maximum, any
duplication and reordering of deliveries ends in the same state. Tombstones are stored like values
(with an expiry at least :data:`TOMBSTONE_RETENTION_MS` away), so a late older write stays stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fleetlink.core.copying import copied
from fleetlink.core.relay.hlc import Hlc
from fleetlink.core.relay.records import MAX_FUTURE_SKEW_MS, TOMBSTONE_RETENTION_MS, Record


class RecordStatus(StrEnum):
    """What became of one record: the first three acknowledge it; ``rejected`` is final (the record
    breaks a rule); ``retry`` means the server could not write it now (throttled): send it again."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    REJECTED = "rejected"
    #: The cloud could not write the record now (throttled): the node sends it again.
    RETRY = "retry"

    @property
    def acknowledges(self) -> bool:
        """Whether the node may forget the record (the cloud has it, or has something newer)."""
        return self in (RecordStatus.APPLIED, RecordStatus.DUPLICATE, RecordStatus.STALE)


#: The merge's outcome for a record is its status on the wire (``fleetlink.contract.relay``).
Outcome = RecordStatus


@dataclass(frozen=True, slots=True)
class StoredRecord(Record):
    """What the cloud keeps for one (node, collection, key): the record, whose it is and when kept."""

    node_id: str
    updated_at: int
    #: Set on tombstones only: when the cloud may forget them.
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: str | None = None


def hlc_too_far_ahead(hlc: Hlc, now_ms: int) -> bool:
    return hlc.ms > now_ms + MAX_FUTURE_SKEW_MS


def replaces(stored: StoredRecord | None, incoming: Record) -> bool:
    """The write condition: nothing stored, or a lower stored hlc."""
    return stored is None or stored.hlc < incoming.hlc


def classify_kept(stored: StoredRecord, incoming: Record) -> Outcome:
    """Why ``incoming`` did not replace ``stored`` (what a failed conditional write answers)."""
    if stored.record_id == incoming.record_id and stored.hlc == incoming.hlc:
        return Outcome.DUPLICATE
    return Outcome.STALE


def decide(stored: StoredRecord | None, incoming: Record, now_ms: int) -> Decision:
    """The outcome of writing ``incoming`` over ``stored`` (None when nothing is stored) at ``now_ms``."""
    if hlc_too_far_ahead(incoming.hlc, now_ms):
        return Decision(Outcome.REJECTED, f"hlc-ahead: hlc is more than {MAX_FUTURE_SKEW_MS // 1000} s ahead")
    if stored is None or replaces(stored, incoming):
        return Decision(Outcome.APPLIED)
    return Decision(classify_kept(stored, incoming))


def stored_from(node_id: str, incoming: Record, now_ms: int) -> StoredRecord:
    """The item to write when ``incoming`` applies (tombstones expire after the retention period)."""
    return copied(
        StoredRecord,
        incoming,
        node_id=node_id,
        updated_at=now_ms,
        expires_at=now_ms + TOMBSTONE_RETENTION_MS if incoming.deleted else None,
    )


def merge(
    stored: StoredRecord | None, node_id: str, incoming: Record, now_ms: int
) -> tuple[Decision, StoredRecord | None]:
    """The decision and the item kept afterwards (the new one when applied, else ``stored``)."""
    decision = decide(stored, incoming, now_ms)
    if decision.outcome is Outcome.APPLIED:
        return decision, stored_from(node_id, incoming, now_ms)
    return decision, stored
