"""`agents upgrade --max-concurrency`: a number of agents, or a share of those targeted."""

from __future__ import annotations

import pytest
import typer

from fleetlink.cli.operator.agent_lifecycle import _concurrency


@pytest.mark.parametrize(
    ("given", "targeted", "expected"),
    [(None, 50, None), ("3", 50, 3), ("10%", 50, 5), ("10%", 3, 1), ("25%", 10, 3), ("100%", 7, 7)],
)
def test_a_share_is_of_the_targeted_agents_and_at_least_one(
    given: str | None, targeted: int, expected: int | None
) -> None:
    assert _concurrency(given, targeted) == expected


@pytest.mark.parametrize("given", ["0", "-1", "0%", "101%", "ten", "%"])
def test_nonsense_is_a_usage_error_that_names_the_option(given: str) -> None:
    with pytest.raises(typer.BadParameter, match="a number of agents or a share"):
        _concurrency(given, 10)
