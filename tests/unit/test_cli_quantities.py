"""The command line's one parser for durations, sizes and shares, its paging, and how `tasks run`
decides that its wait is over."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import typer

from fleetlink.cli.paging import take
from fleetlink.cli.params import (
    Share,
    duration_parser,
    format_seconds,
    parse_duration,
    parse_share,
    parse_size,
)
from fleetlink.cli.waiting import RunExit, _ended, named_list
from fleetlink.contract.tasks import TaskDetail


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86_400), (" 5 m", 300)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "-5", "1.5h", "ten", "10w", "5%"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"), [("512", 512), ("64KiB", 65_536), ("1MB", 10**6), ("2gib", 2 * 1024**3)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_shares_are_counts_or_percentages_rounded_up() -> None:
    assert parse_share("5") == Share(count=5)
    assert parse_share("10%").of(65) == 7
    assert parse_share("1%").of(3) == 1
    for text in ("0", "0%", "101%", "x", "-1"):
        with pytest.raises(ValueError, match=r"count|percentage"):
            parse_share(text)


def test_a_flag_outside_the_servers_bounds_fails_naming_the_bound() -> None:
    # Given the parser of --timeout (1 s to 1 day)
    parse = duration_parser(1, 86_400)
    # When a value past the bound is given / Then it is a usage error naming the maximum
    with pytest.raises(typer.BadParameter, match="above the maximum, 1d"):
        parse("2d")
    assert parse("1d") == 86_400
    assert format_seconds(90) == "90s"
    assert format_seconds(7200) == "2h"


@dataclass
class _Page:
    items: list[int]
    cursor: str | None


def _pages(total: int) -> tuple[list[tuple[int, str | None]], Callable[[int, str | None], _Page]]:
    """A list of ``total`` rows served in pages as the API does (the last page may hand back a cursor)."""
    calls: list[tuple[int, str | None]] = []

    def fetch(size: int, cursor: str | None) -> _Page:
        calls.append((size, cursor))
        start = int(cursor or 0)
        rows = list(range(start, min(total, start + size)))
        return _Page(rows, str(start + size) if start + size <= total else None)

    return calls, fetch


def test_a_list_cut_at_its_limit_hands_back_the_cursor_that_continues() -> None:
    _, fetch = _pages(120)
    taken = take(fetch, limit=50, every=False)
    assert taken.items == list(range(50))
    assert taken.cursor == "50"


def test_a_list_exactly_at_its_limit_is_not_said_to_be_cut() -> None:
    # Given 100 rows, whose last page still hands back a cursor
    _, fetch = _pages(100)
    # When 100 are asked for / Then the one-row look ahead finds nothing more
    taken = take(fetch, limit=100, every=False)
    assert len(taken.items) == 100
    assert taken.cursor is None


def test_all_reads_every_page() -> None:
    _, fetch = _pages(250)
    taken = take(fetch, limit=50, every=True)
    assert taken.items == list(range(250))
    assert taken.cursor is None


def test_named_lists_say_how_many_more() -> None:
    assert named_list([f"a{i}" for i in range(62)]).endswith("a9 and 52 more")


ON = "agt_" + "0" * 25 + "1"
OFF = "agt_" + "0" * 25 + "2"


def _task(*statuses: tuple[str, str]) -> TaskDetail:
    executions = [
        {
            "execution_id": f"exe_{i}",
            "task_id": "tsk_1",
            "agent_id": agent_id,
            "status": status,
            "attempt": 1,
            "exit_code": None,
            "error": None,
            "output": None,
            "output_truncated": False,
            "output_bytes": None,
            "started_at": None,
            "finished_at": None,
            "duration_ms": None,
            "updated_at": 1,
        }
        for i, (agent_id, status) in enumerate(statuses)
    ]
    return TaskDetail.model_validate(
        {
            "task_id": "tsk_1",
            "type": "shell",
            "command": "true",
            "input": None,
            "targets": {"agent_ids": [a for a, _ in statuses], "tags": {}},
            "priority": 0,
            "timeout_seconds": 60,
            "max_retries": 0,
            "delivery_timeout_seconds": 86_400,
            "state": "active",
            "created_at": 1,
            "created_by": "operator",
            "execution_count": len(statuses),
            "counts": {},
            "executions": executions,
        }
    )


def test_the_wait_ends_once_only_offline_targets_are_left_after_the_grace() -> None:
    task = _task((ON, "succeeded"), (OFF, "queued"))
    assert _ended(task, {OFF}, None, grace_over=False) is None
    outcome = _ended(task, {OFF}, None, grace_over=True)
    assert outcome is not None
    assert outcome.exit is RunExit.OFFLINE
    assert [e.agent_id for e in outcome.offline] == [OFF]


def test_a_failure_wins_over_offline_targets() -> None:
    task = _task((ON, "failed"), (OFF, "queued"))
    outcome = _ended(task, {OFF}, None, grace_over=True)
    assert outcome is not None
    assert outcome.exit is RunExit.FAILED


def test_an_agent_still_at_work_is_waited_for_until_the_deadline() -> None:
    task = _task((ON, "running"), (OFF, "queued"))
    assert _ended(task, {OFF}, None, grace_over=True) is None
    outcome = _ended(task, {OFF}, 0.0, grace_over=True)
    assert outcome is not None
    assert outcome.exit is RunExit.WAIT_TIMEOUT
    assert [e.agent_id for e in outcome.unfinished] == [ON]
