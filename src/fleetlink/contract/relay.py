"""Wire models of relay sync (``/v1/relay/*``), shared by the relay function and the agent.

Shapes (ids, names, hlc syntax, list sizes) are checked here and fail a request as a whole (422).
What depends on the content or on server time (value size, non-finite numbers, nesting depth, an
hlc too far ahead) is answered per record as ``rejected`` by :mod:`fleetlink.core.relay`, so one
bad record never holds back the others of a batch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, JsonValue, field_validator, model_validator

from fleetlink.core.copying import copied
from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.ids import IdPrefix, id_pattern
from fleetlink.core.json_values import MAX_SAFE_INT
from fleetlink.core.relay.hlc import HLC_PATTERN
from fleetlink.core.relay.merge import RecordStatus as RecordStatus  # the wire word for the merge outcome
from fleetlink.core.relay.merge import StoredRecord
from fleetlink.core.relay.policy import Readers
from fleetlink.core.relay.records import (
    COLLECTION_PATTERN,
    MAX_BATCH_RECORDS,
    MAX_COLLECTION_CHARS,
    InvalidRecord,
    Record,
    check_key,
    make_record,
)
from fleetlink.core.relay.service import Incoming, RecordAnswer, Rejection

MAX_QUERY_LIMIT = 100
DEFAULT_QUERY_LIMIT = 50
MAX_CURSOR_CHARS = 2048


def _key(value: str) -> str:
    try:
        return check_key(value)
    except InvalidRecord as exc:
        raise ValueError(exc.detail) from None


class RelayRecord(DeferredModel):
    """One write of the signing node: a value, or ``deleted: true`` (a tombstone)."""

    record_id: str = Field(pattern=id_pattern(IdPrefix.RECORD), description="rec_ + ULID, made by the node")
    collection: str = Field(min_length=1, max_length=MAX_COLLECTION_CHARS, pattern=COLLECTION_PATTERN)
    key: str = Field(description="1-512 UTF-8 bytes, no control characters")
    hlc: str = Field(pattern=HLC_PATTERN, examples=["1764512345678-0001"])
    value: JsonValue = Field(default=None, description="Any JSON, at most 64 KiB serialised")
    deleted: bool = False
    node_id: str | None = Field(
        default=None,
        description="Optional; when given it must be the signing agent (a node writes only its own records)",
    )

    _check_key = field_validator("key")(_key)

    @model_validator(mode="after")
    def _value_or_deleted(self) -> RelayRecord:
        has_value = "value" in self.model_fields_set
        if self.deleted and has_value and self.value is not None:
            raise ValueError("a deleted record carries no value")
        if not self.deleted and not has_value:
            raise ValueError("a record needs a value, or deleted: true")
        return self

    def wire(self) -> dict[str, Any]:
        """The JSON body of this record (``value`` or ``deleted``, never both)."""
        body: dict[str, Any] = {
            "record_id": self.record_id,
            "collection": self.collection,
            "key": self.key,
            "hlc": self.hlc,
        }
        if self.deleted:
            body["deleted"] = True
        else:
            body["value"] = self.value
        return body

    def to_incoming(self) -> Incoming:
        """The record as the relay service takes it: checked (or refused), with the node it claims."""
        try:
            return Incoming(self.node_id, self.to_core())
        except InvalidRecord as exc:
            return Incoming(self.node_id, Rejection(self.record_id, str(exc)))

    def to_core(self) -> Record:
        """The checked core record; raises InvalidRecord (answer ``rejected``) for a bad value."""
        return make_record(**self.model_dump(exclude={"node_id"}))


class RecordResult(DeferredModel):
    """The answer for one record (the whole answer of ``/relay/immediate``)."""

    record_id: str
    status: RecordStatus
    error: str | None = Field(default=None, description="Why, for rejected and retry")


class BatchRequest(DeferredModel):
    records: list[RelayRecord] = Field(min_length=1, max_length=MAX_BATCH_RECORDS)


class BatchAnswer(DeferredModel):
    """One result per record, in request order."""

    results: list[RecordResult]


class QueryRequest(DeferredModel):
    collection: str = Field(min_length=1, max_length=MAX_COLLECTION_CHARS, pattern=COLLECTION_PATTERN)
    node_id: str | None = Field(default=None, pattern=id_pattern(IdPrefix.AGENT))
    key_prefix: str | None = None
    updated_since: int | None = Field(
        default=None, strict=True, ge=0, le=MAX_SAFE_INT, description="Epoch ms: records updated after"
    )
    include_deleted: bool = False
    limit: int = Field(default=DEFAULT_QUERY_LIMIT, strict=True, ge=1, le=MAX_QUERY_LIMIT)
    cursor: str | None = Field(default=None, min_length=1, max_length=MAX_CURSOR_CHARS)

    @field_validator("key_prefix")
    @classmethod
    def _check_prefix(cls, value: str | None) -> str | None:
        return None if value is None else _key(value)


class QueryRecord(DeferredModel):
    node_id: str
    collection: str
    key: str
    value: JsonValue = None
    deleted: bool = False
    hlc: str
    updated_at: int


class QueryAnswer(DeferredModel):
    records: list[QueryRecord]
    cursor: str | None = None


class NodeSyncState(DeferredModel):
    """A node's sync as the cloud saw it (operators): totals since its first record."""

    node_id: str
    records: int = Field(description="Keys holding a value now")
    tombstones: int = Field(description="Keys deleted (tombstones written; TTL expiry not subtracted)")
    applied: int
    duplicate: int
    stale: int
    rejected: int
    retry: int
    last_applied_hlc: str | None = Field(
        description="The highest hlc applied: how far the cloud has the node"
    )
    last_applied_at: int | None
    last_request_at: int


class TagReaders(DeferredModel):
    tag: dict[str, str] = Field(min_length=1, description="An agent must carry all these tags")


class CollectionPolicy(DeferredModel):
    """Who may query a collection: ``"fleet"`` (every active agent) or agents with the given tags."""

    readers: Literal["fleet"] | TagReaders = "fleet"


def record_result(answer: RecordAnswer) -> RecordResult:
    """The wire answer for one record."""
    return RecordResult(record_id=answer.record_id, status=answer.outcome, error=answer.error)


def query_record(item: StoredRecord) -> QueryRecord:
    """A stored record as a query answers it."""
    return copied(QueryRecord, item, value=item.value(), deleted=item.deleted, hlc=str(item.hlc))


def collection_policy(readers: Readers) -> CollectionPolicy:
    """Who may query a collection, on the wire."""
    return CollectionPolicy(readers="fleet" if readers == "fleet" else TagReaders(tag=dict(readers)))


def policy_readers(policy: CollectionPolicy) -> Readers:
    """Who may query a collection, as the relay service keeps it."""
    return "fleet" if policy.readers == "fleet" else dict(policy.readers.tag)
