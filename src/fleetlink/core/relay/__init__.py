"""Relay sync rules, pure: hybrid logical clocks, record validation, the merge rule, read policy."""

from fleetlink.core.relay.hlc import Hlc, InvalidHlc, tick
from fleetlink.core.relay.merge import Decision, Outcome, StoredRecord, decide, merge
from fleetlink.core.relay.policy import Readers, may_read
from fleetlink.core.relay.records import (
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MAX_FUTURE_SKEW_MS,
    MAX_VALUE_BYTES,
    TOMBSTONE_RETENTION_MS,
    InvalidRecord,
    Record,
    encode_value,
    make_record,
)

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_RECORDS",
    "MAX_FUTURE_SKEW_MS",
    "MAX_VALUE_BYTES",
    "TOMBSTONE_RETENTION_MS",
    "Decision",
    "Hlc",
    "InvalidHlc",
    "InvalidRecord",
    "Outcome",
    "Readers",
    "Record",
    "StoredRecord",
    "decide",
    "encode_value",
    "make_record",
    "may_read",
    "merge",
    "tick",
]
