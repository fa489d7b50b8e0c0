"""Ports of the cloud side of relay sync: what it needs from storage (adapter: fleetlink.store.relay)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fleetlink.core.audit import AuditRecord
from fleetlink.core.entities import Page
from fleetlink.core.relay.merge import StoredRecord
from fleetlink.core.relay.policy import Readers


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one conditional write did: ``previous`` is the item it replaced (applied) or the one that
    kept its place (not applied), as DynamoDB returned it; None when nothing was stored."""

    applied: bool
    previous: StoredRecord | None


@dataclass(frozen=True, slots=True)
class SyncTally:
    """What one request did for one node: counts per outcome, and the change in its live records."""

    applied: int = 0
    duplicate: int = 0
    stale: int = 0
    rejected: int = 0
    retry: int = 0
    #: Keys that now hold a value and did not before (negative: values replaced by tombstones).
    live_delta: int = 0
    tombstone_delta: int = 0
    #: The highest hlc applied by the request (text form), None when nothing applied.
    max_applied_hlc: str | None = None
    #: Collections the request wrote to: kept on the node's sync state, so a purge finds its records.
    collections: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class NodeSync:
    """A node's sync as the cloud saw it: totals since its first record, and the last hlc applied."""

    node_id: str
    records: int
    tombstones: int
    applied: int
    duplicate: int
    stale: int
    rejected: int
    retry: int
    last_applied_hlc: str | None
    last_applied_at: int | None
    last_request_at: int


@dataclass(frozen=True, slots=True)
class RecordQuery:
    collection: str
    node_id: str | None = None
    key_prefix: str | None = None
    updated_since: int | None = None
    include_deleted: bool = False
    limit: int = 50
    cursor: str | None = None


class RelayRepository(Protocol):
    def put_if_newer(self, item: StoredRecord) -> WriteResult:
        """Store ``item`` if nothing is stored for its (node, collection, key) or the stored hlc is
        lower (:func:`fleetlink.core.relay.merge.replaces`), in ONE conditional write.

        Raises :class:`~fleetlink.core.errors.Throttled` or ``Unavailable`` when it could not write.
        """
        ...

    def record_sync(self, node_id: str, tally: SyncTally, now_ms: int) -> None:
        """Add one request's tally to the node's sync state (one write per request, not per record)."""
        ...

    def sync_state(self, node_id: str) -> NodeSync | None: ...

    def query(self, query: RecordQuery, now_ms: int) -> Page[StoredRecord]:
        """Records of a collection (live ones; tombstones too with ``include_deleted``, never expired ones).

        Raises InvalidInput (400) for a cursor this API did not issue for this very query.
        """
        ...

    def readers(self, collection: str) -> Readers:
        """Who may query ``collection`` (``"fleet"`` unless an operator set a policy)."""
        ...

    def set_readers(
        self, collection: str, readers: Readers, *, by: str, now_ms: int, audit: AuditRecord
    ) -> None: ...
