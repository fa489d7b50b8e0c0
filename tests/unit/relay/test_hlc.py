"""Hybrid logical clock values: text form, order, and the tick that never goes backwards."""

from __future__ import annotations

import pytest

from fleetlink.core.relay.hlc import MAX_COUNTER, MIN_MS, Hlc, InvalidHlc, tick


def test_text_form_round_trips_in_canonical_lowercase() -> None:
    # Given an hlc written with uppercase hex / When parsed and printed / Then it is canonical lowercase
    assert str(Hlc.parse("1764512345678-00AF")) == "1764512345678-00af"
    assert Hlc.parse("1764512345678-0001") == Hlc(1764512345678, 1)


def test_order_is_by_ms_then_counter_and_matches_the_canonical_strings() -> None:
    values = [Hlc(1764512345679, 0), Hlc(1764512345678, 0xFFFF), Hlc(1764512345678, 2)]
    assert sorted(values) == [Hlc(1764512345678, 2), Hlc(1764512345678, 0xFFFF), Hlc(1764512345679, 0)]
    assert sorted(str(v) for v in values) == [str(v) for v in sorted(values)]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1764512345678",
        "1764512345678-001",
        "176451234567-0001",
        "17645123456789-0001",
        "1764512345678-00g1",
        "1764512345678_0001",
        " 1764512345678-0001",
        "1764512345678-0001\n",
        "-764512345678-0001",
        "٣764512345678-0001",
    ],
)
def test_malformed_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidHlc):
        Hlc.parse(text)


def test_tick_takes_the_wall_clock_when_it_is_ahead() -> None:
    assert tick(Hlc(1764512345678, 7), 1764512345999) == Hlc(1764512345999, 0)


def test_tick_counts_on_when_the_wall_clock_stepped_back() -> None:
    # Given a last hlc ahead of a wall clock that stepped back an hour / Then the next is still higher
    last = Hlc(1764512345678, 7)
    assert tick(last, 1764512345678 - 3_600_000) == Hlc(1764512345678, 8)


def test_tick_moves_to_the_next_millisecond_when_the_counter_is_full() -> None:
    assert tick(Hlc(1764512345678, MAX_COUNTER), 1764512345678) == Hlc(1764512345679, 0)


def test_first_tick_with_a_wall_clock_before_2001_starts_at_the_smallest_hlc() -> None:
    assert tick(None, 0) == Hlc(MIN_MS, 0)
