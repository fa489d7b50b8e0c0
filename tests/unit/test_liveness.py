"""Derived liveness from the last heartbeat."""

import pytest

from fleetlink.core.agents.liveness import MISSED_INTERVALS_BEFORE_LOST, liveness
from fleetlink.core.entities import Liveness

NOW = 1_800_000_000_000
INTERVAL_S = 60


def test_no_heartbeat_yet_is_never_seen() -> None:
    assert liveness(None, NOW, INTERVAL_S) is Liveness.NEVER_SEEN


@pytest.mark.parametrize(
    ("age_ms", "expected"),
    [
        (0, Liveness.ONLINE),
        (MISSED_INTERVALS_BEFORE_LOST * INTERVAL_S * 1000, Liveness.ONLINE),
        (MISSED_INTERVALS_BEFORE_LOST * INTERVAL_S * 1000 + 1, Liveness.CONNECTION_LOST),
    ],
)
def test_online_until_it_misses_the_allowed_intervals(age_ms: int, expected: Liveness) -> None:
    # Given a heartbeat age_ms ago / When liveness is derived / Then it is as expected
    assert liveness(NOW - age_ms, NOW, INTERVAL_S) is expected
