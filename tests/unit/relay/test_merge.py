"""The merge rule per (node, collection, key): applied, duplicate, stale, rejected; tombstones."""

from __future__ import annotations

from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.relay.hlc import Hlc
from fleetlink.core.relay.merge import Outcome, StoredRecord, decide, merge, stored_from
from fleetlink.core.relay.records import MAX_FUTURE_SKEW_MS, TOMBSTONE_RETENTION_MS, Record, make_record

NOW = 1_764_512_345_678
NODE = "agt_01JBX0000000000000000000AA"


def record(hlc: Hlc, value: object = 1, *, deleted: bool = False, record_id: str | None = None) -> Record:
    return make_record(
        record_id=record_id or new_id(IdPrefix.RECORD),
        collection="c",
        key="k",
        hlc=hlc,
        value=value,
        deleted=deleted,
    )


def stored(incoming: Record) -> StoredRecord:
    return stored_from(NODE, incoming, NOW)


def test_a_first_record_applies() -> None:
    assert decide(None, record(Hlc(NOW)), NOW).outcome is Outcome.APPLIED


def test_a_higher_hlc_applies_over_the_stored_record() -> None:
    assert decide(stored(record(Hlc(NOW, 1))), record(Hlc(NOW, 2)), NOW).outcome is Outcome.APPLIED


def test_the_same_record_again_is_a_duplicate() -> None:
    first = record(Hlc(NOW, 1))
    assert decide(stored(first), first, NOW).outcome is Outcome.DUPLICATE


def test_a_lower_hlc_is_stale() -> None:
    assert decide(stored(record(Hlc(NOW, 2))), record(Hlc(NOW, 1)), NOW).outcome is Outcome.STALE


def test_an_equal_hlc_from_another_record_is_stale() -> None:
    assert decide(stored(record(Hlc(NOW, 2))), record(Hlc(NOW, 2)), NOW).outcome is Outcome.STALE


def test_an_hlc_up_to_300_s_ahead_applies_and_beyond_is_rejected() -> None:
    # Given server time NOW / Then exactly 300 s ahead is fine, one millisecond more is not
    assert decide(None, record(Hlc(NOW + MAX_FUTURE_SKEW_MS)), NOW).outcome is Outcome.APPLIED
    decision = decide(None, record(Hlc(NOW + MAX_FUTURE_SKEW_MS + 1)), NOW)
    assert decision.outcome is Outcome.REJECTED
    assert decision.reason
    assert decision.reason.startswith("hlc-ahead")


def test_a_tombstone_is_kept_with_an_expiry_and_a_late_older_write_stays_stale() -> None:
    # Given a delete applied at NOW
    _, kept = merge(None, NODE, record(Hlc(NOW, 5), deleted=True), NOW)
    assert kept is not None
    assert kept.deleted
    assert kept.expires_at == NOW + TOMBSTONE_RETENTION_MS
    # When an older write arrives a day later / Then it is stale and the tombstone stays
    decision, after = merge(kept, NODE, record(Hlc(NOW, 4), value="old"), NOW + 86_400_000)
    assert decision.outcome is Outcome.STALE
    assert after is kept


def test_merge_keeps_the_stored_record_when_it_does_not_apply() -> None:
    current = stored(record(Hlc(NOW, 9)))
    decision, kept = merge(current, NODE, record(Hlc(NOW, 1)), NOW)
    assert decision.outcome is Outcome.STALE
    assert kept is current
