"""Opaque page cursors over one or more partitions (sharded lists) of the table or an index."""

from __future__ import annotations

import base64
import binascii
import json
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
