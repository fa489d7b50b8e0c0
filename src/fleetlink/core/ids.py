"""Prefixed ULIDs: sortable by creation time, typed by their prefix."""

from __future__ import annotations

import re
from enum import StrEnum

from ulid import ULID


class IdPrefix(StrEnum):
    AGENT = "agt"
    TASK = "tsk"
    EXECUTION = "exe"
    TUNNEL = "tun"
    ROUTE = "rte"
    EVENT = "evt"
    TOKEN = "tok"  # noqa: S105 - an id prefix
    RECORD = "rec"
    AUDIT = "aud"


_ULID_PATTERN = "[0-9A-HJKMNP-TV-Z]{26}"


def new_id(prefix: IdPrefix, at_ms: int | None = None) -> str:
    """A new id such as ``agt_01J...``; ``at_ms`` pins its time component."""
    value = ULID.from_timestamp(at_ms / 1000) if at_ms is not None else ULID()
    return f"{prefix}_{value}"


def id_pattern(prefix: IdPrefix) -> str:
    """Regular expression matching ids with this prefix (for request validation)."""
    return f"^{prefix}_{_ULID_PATTERN}$"


def is_id(value: str, prefix: IdPrefix) -> bool:
    return re.fullmatch(id_pattern(prefix), value) is not None
