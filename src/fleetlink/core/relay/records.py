"""The relay record and its rules: names, keys, values, limits.

A record is one write of one node to ``(collection, key)``: a JSON value, or a tombstone when the
key was deleted. Values are kept as their canonical JSON text (compact, UTF-8), which is what the
size limit measures and what both sides store.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from fleetlink.core.ids import IdPrefix, is_id
from fleetlink.core.json_values import MAX_VALUE_DEPTH, check_json_value
from fleetlink.core.relay.hlc import Hlc, InvalidHlc

COLLECTION_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_COLLECTION_CHARS = 64
MAX_KEY_BYTES = 512
#: A value's canonical JSON at most this many bytes (far under DynamoDB's 400 KB item limit).
MAX_VALUE_BYTES = 64 * 1024
#: Integers in values stay within what a DynamoDB number holds (38 significant digits).
MAX_INT_DIGITS = 38
#: An hlc further than this ahead of the server's clock is rejected (a broken clock must not win forever).
MAX_FUTURE_SKEW_MS = 300_000
#: How long the cloud keeps a tombstone: an older write arriving within it stays stale.
TOMBSTONE_RETENTION_MS = 30 * 24 * 3600 * 1000
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024

_COLLECTION_RE = re.compile(COLLECTION_PATTERN)


class InvalidRecord(ValueError):
    """A record (or part of one) breaks a rule; ``reason`` is a short code for per-record answers."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def check_collection(name: str) -> str:
    """``name`` if it is 1-64 characters of ``[A-Za-z0-9_.-]``."""
    if not isinstance(name, str) or not _COLLECTION_RE.fullmatch(name):
        raise InvalidRecord("invalid-collection", "collection must be 1-64 characters of A-Z a-z 0-9 _ . -")
    return name


def check_key(key: str) -> str:
    """``key`` if it is 1-512 UTF-8 bytes without control characters."""
    if not isinstance(key, str) or not key:
        raise InvalidRecord("invalid-key", "key must be a non-empty string")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRecord("invalid-key", "key is not valid UTF-8 (lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise InvalidRecord("invalid-key", f"key is {size} UTF-8 bytes, more than {MAX_KEY_BYTES}")
    if any(unicodedata.category(char) == "Cc" for char in key):
        raise InvalidRecord("invalid-key", "key must not contain control characters")
    return key


def check_record_id(record_id: str) -> str:
    if not isinstance(record_id, str) or not is_id(record_id, IdPrefix.RECORD):
        raise InvalidRecord("invalid-record-id", "record_id must be rec_ followed by a ULID")
    return record_id


def parse_hlc(text: str | Hlc) -> Hlc:
    if isinstance(text, Hlc):
        return text
    try:
        return Hlc.parse(text)
    except InvalidHlc as exc:
        raise InvalidRecord("invalid-hlc", str(exc)) from None


def _check_json_shape(value: Any) -> None:
    """Only JSON types, finite numbers, integers DynamoDB holds, string keys, bounded depth."""
    try:
        check_json_value(value, max_depth=MAX_VALUE_DEPTH, max_int=10**MAX_INT_DIGITS - 1)
    except ValueError as exc:
        raise InvalidRecord("invalid-value", f"value {exc}" if "nests" in str(exc) else str(exc)) from None


def encode_value(value: Any) -> str:
    """The canonical JSON text of ``value`` (compact, UTF-8, key order kept), checked against the rules."""
    _check_json_shape(value)
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode("utf-8"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidRecord("invalid-value", f"value is not serialisable as JSON: {exc}") from None
    if size > MAX_VALUE_BYTES:
        raise InvalidRecord("value-too-large", f"value is {size} bytes as JSON, more than {MAX_VALUE_BYTES}")
    return text


@dataclass(frozen=True, slots=True)
class Record:
    """One write by one node: ``value_json`` is the canonical JSON of the value, None for a tombstone."""

    record_id: str
    collection: str
    key: str
    hlc: Hlc
    value_json: str | None

    @property
    def deleted(self) -> bool:
        return self.value_json is None

    def value(self) -> Any:
        """The value as Python data (None for a tombstone)."""
        return None if self.value_json is None else json.loads(self.value_json)


def make_record(
    *,
    record_id: str,
    collection: str,
    key: str,
    hlc: str | Hlc,
    value: Any = None,
    deleted: bool = False,
) -> Record:
    """A checked record; raises :class:`InvalidRecord` naming the first rule broken."""
    return Record(
        record_id=check_record_id(record_id),
        collection=check_collection(collection),
        key=check_key(key),
        hlc=parse_hlc(hlc),
        value_json=None if deleted else encode_value(value),
    )
