"""Opaque page cursors over one or more partitions (sharded lists) of the table or an index.

:class:`CursorCodec` makes them tamper-evident: a cursor is ``<payload>.<tag>``, the payload
(base64url JSON) holding where a list stopped and the tag (HMAC-SHA256 with a server key) binding it
to that key and to the list and filter it was issued for (its *scope*). A cursor that was altered,
forged, issued by a server with another key, or reused with another filter is refused with a 400
before any of it reaches a query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any

from fleetlink.core.errors import InvalidInput
from fleetlink.store import keys


def encode_cursor(position: int, last_key: dict[str, Any] | None) -> str:
    """An opaque cursor: which partition of a multi-partition list, and where in it."""
    raw = json.dumps({"s": position, "k": last_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str | None, partitions: int = keys.LIST_SHARDS
) -> tuple[int, dict[str, Any] | None]:
    """(position, last key) of a cursor this API returned; anything else is a 400."""
    if cursor is None:
        return 0, None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        shard, last_key = data["s"], data["k"]
        valid_key = last_key is None or (
            isinstance(last_key, dict)
            and all(
                isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in last_key.values()
            )
        )
        if type(shard) is int and 0 <= shard < partitions and valid_key:
            return shard, last_key
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise InvalidInput("the cursor is not one this API returned", code="invalid-cursor")


def sharded_pages(query: Any, cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    """Up to ``limit`` items from the shards in turn; ``query(shard, last_key, n)`` pages one shard."""
    shard, last_key = decode_cursor(cursor)
    found: list[Any] = []
    while shard < keys.LIST_SHARDS and len(found) < limit:
        results = query(shard, last_key, limit - len(found))
        found += list(results)
        last_key = results.last_evaluated_key
        if last_key is None:
            shard += 1
    return found, encode_cursor(shard, last_key) if shard < keys.LIST_SHARDS else None


_VERSION = b"fleetlink-cursor-v1"
_TAG_BYTES = 16
#: Cursors longer than this are refused unread (a page position is far smaller).
MAX_CURSOR_CHARS = 2048


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def invalid_cursor() -> InvalidInput:
    return InvalidInput("the cursor is not one this API returned for this list", code="invalid-cursor")


class CursorCodec:
    """Seals and opens the cursors of every list with one server key."""

    def __init__(self, key: bytes | None = None) -> None:
        """``key``: at least 32 bytes; None generates one for this process (dev stack, tests)."""
        if key is not None and len(key) < 32:
            raise ValueError("a cursor key needs at least 32 bytes")
        self._key = key or secrets.token_bytes(32)

    def _tag(self, scope: str, payload: str) -> bytes:
        message = b"\n".join((_VERSION, scope.encode(), payload.encode()))
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_TAG_BYTES]

    def seal(self, scope: str, position: dict[str, Any]) -> str:
        payload = _b64(json.dumps(position, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{_b64(self._tag(scope, payload))}"

    def open(self, scope: str, cursor: str) -> dict[str, Any]:
        """The position sealed in ``cursor`` for ``scope``; anything else raises a 400 (invalid-cursor)."""
        payload, dot, tag = cursor.partition(".")
        if not dot or len(cursor) > MAX_CURSOR_CHARS:
            raise invalid_cursor()
        try:
            authentic = hmac.compare_digest(_unb64(tag), self._tag(scope, payload))
            position = json.loads(_unb64(payload)) if authentic else None
        except (ValueError, binascii.Error):
            raise invalid_cursor() from None
        if not isinstance(position, dict):
            raise invalid_cursor()
        return position


def last_key_of(position: dict[str, Any]) -> dict[str, Any] | None:
    """The DynamoDB last evaluated key a position holds, checked to be string keys only."""
    last_key = position.get("k")
    if last_key is None:
        return None
    if isinstance(last_key, dict) and all(
        isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in last_key.values()
    ):
        return last_key
    raise invalid_cursor()
