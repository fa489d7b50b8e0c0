"""Heartbeat sequences: a per-agent strictly increasing number carried in the signature's ``nonce``.

The fleetlink agent signs each heartbeat with ``nonce="seq:<n>"``; ``<n>`` only ever grows (the agent
keeps it in its SQLite file across restarts and wall-clock steps). The server accepts a heartbeat
only if ``<n>`` is greater than the last one the agent's presence item recorded, in the same
conditional UpdateItem that records the heartbeat, so a heartbeat spends no nonce item. Any other
nonce (a generic RFC 9421 client's random one) is single-use as on every route.
"""

from __future__ import annotations

import re

SEQUENCE_NONCE_PREFIX = "seq:"
#: Decimal, no sign, no leading zero; below 2**63 so it fits every store and language.
MAX_SEQUENCE = 2**63 - 1
_SEQUENCE = re.compile(r"seq:([1-9][0-9]{0,18})")


def sequence_nonce(sequence: int) -> str:
    """The ``nonce`` signature parameter carrying ``sequence``."""
    if not 1 <= sequence <= MAX_SEQUENCE:
        raise ValueError(f"a heartbeat sequence is 1..{MAX_SEQUENCE}, got {sequence}")
    return f"{SEQUENCE_NONCE_PREFIX}{sequence}"


def sequence_of(nonce: str) -> int | None:
    """The sequence a ``nonce`` carries, or None when it is an ordinary (random) nonce."""
    match = _SEQUENCE.fullmatch(nonce)
    if match is None:
        return None
    value = int(match[1])
    return value if value <= MAX_SEQUENCE else None
