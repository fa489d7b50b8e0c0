"""Opaque page cursors, authenticated with a server key (HMAC-SHA256), over one or more partitions.

A cursor is ``<payload>.<tag>``: the payload (base64url JSON) holds where a list stopped, in
absolute terms (a shard, a month, DynamoDB's last evaluated key); the tag binds it to the key and
to the list and filter it was issued for (its *scope*). A cursor that was altered, forged, issued
by a server with another key, or reused with another filter is refused with a 400 before any of it
reaches a query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from typing import Any

from fleetlink.core.errors import InvalidInput
from fleetlink.store import keys

_VERSION = b"fleetlink-cursor-v1"
_TAG_BYTES = 16
#: Cursors longer than this are refused unread (a page position is far smaller).
MAX_CURSOR_CHARS = 2048
#: Items a filtered list reads per Query (DynamoDB applies Limit before the filter, so a filtered
#: Query of Limit n may return nothing while matches wait further on; the filter keeps what matches).
FILTERED_PAGE = 100


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _checked(key: bytes) -> bytes:
    if len(key) < 32:
        raise ValueError("a cursor key needs at least 32 bytes")
    return key


def invalid_cursor() -> InvalidInput:
    return InvalidInput("the cursor is not one this API returned for this list", code="invalid-cursor")


class CursorCodec:
    """Seals and opens the cursors of every list with one server key."""

    def __init__(self, key: bytes | Callable[[], bytes] | None = None) -> None:
        """``key``: at least 32 bytes, or what returns them on first use (a deployed function reads its
        secret only when a list is paged); None generates one for this process (dev stack, tests)."""
        self._load = key if callable(key) else None
        self._key = None if callable(key) else _checked(key or secrets.token_bytes(32))

    def _secret(self) -> bytes:
        if self._key is None:
            assert self._load is not None
            self._key = _checked(self._load())
        return self._key

    def _tag(self, scope: str, payload: str) -> bytes:
        message = b"\n".join((_VERSION, scope.encode(), payload.encode()))
        return hmac.new(self._secret(), message, hashlib.sha256).digest()[:_TAG_BYTES]

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


def sharded_pages(
    query: Any, limit: int, cursors: CursorCodec, scope: str, cursor: str | None
) -> tuple[list[Any], str | None]:
    """Up to ``limit`` items from the shards in turn; ``query(shard, last_key, n)`` pages one shard."""
    shard, last_key = 0, None
    if cursor is not None:
        position = cursors.open(scope, cursor)
        shard, last_key = position.get("s", -1), last_key_of(position)
        if not isinstance(shard, int) or isinstance(shard, bool) or not 0 <= shard < keys.LIST_SHARDS:
            raise invalid_cursor()
    found: list[Any] = []
    while shard < keys.LIST_SHARDS and len(found) < limit:
        results = query(shard, last_key, limit - len(found))
        found += list(results)
        last_key = results.last_evaluated_key
        if last_key is None:
            shard += 1
    if shard >= keys.LIST_SHARDS:
        return found, None
    return found, cursors.seal(scope, {"s": shard, "k": last_key})


class CursorPaged:
    """A store adapter that answers pages: its cursor codec (a fresh key unless one is handed in)."""

    def __init__(self, cursors: CursorCodec | None = None) -> None:
        self._cursors = cursors or CursorCodec()
