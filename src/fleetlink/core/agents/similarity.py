"""Hardware similarity: how sure we are that a re-registering machine is the one we knew.

Weighted fields in the spirit of Hostlink and SSM: a different ``machine_id`` means a different
machine (score 0); otherwise each field both sides report counts with its weight.
"""

from __future__ import annotations

from fleetlink.core.entities import Hardware

FIELD_WEIGHTS: dict[str, int] = {
    "machine_id": 30,
    "product_uuid": 15,
    "mac_address": 15,
    "hostname": 10,
    "cpu_model": 8,
    "arch": 7,
    "os": 5,
    "memory_mb": 4,
    "cpu_count": 3,
    "ip_address": 3,
}

#: Below this score a re-registration is treated like a new key: it needs a valid token.
MIN_TRUSTED_SIMILARITY = 50


def similarity_score(known: Hardware, reported: Hardware) -> int:
    """0-100: the weighted share of fields (reported by either side) that match."""
    before, after = known.fields(), reported.fields()
    if before.get("machine_id") != after.get("machine_id"):
        return 0
    compared = [name for name in FIELD_WEIGHTS if name in before or name in after]
    total = sum(FIELD_WEIGHTS[name] for name in compared)
    matching = sum(FIELD_WEIGHTS[name] for name in compared if before.get(name) == after.get(name))
    return round(100 * matching / total)
