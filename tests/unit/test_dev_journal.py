"""The dev stack's journal: a request waits for the fsync of what it wrote, and no longer; writes that
arrive during an fsync share the next one (group commit); a failed fsync is never taken for a
durable one."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetlink.local.journal import JournalError, WriteJournal

TABLE = "fleetlink"
#: Guards against a hung test; never an assertion about speed.
DEADLINE_S = 30.0


class GatedSync:
    """The real ``os.fdatasync``, held at a gate the test opens (to see who waits for which fsync)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        self.calls = 0
        self.fail_with: OSError | None = None
        self._real = os.fdatasync

    def __call__(self, descriptor: int) -> None:
        self.calls += 1
        self.entered.release()
        assert self.gate.wait(DEADLINE_S), "the test never opened the gate"
        if self.fail_with is not None:
            raise self.fail_with
        self._real(descriptor)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> GatedSync:
    gate = GatedSync()
    monkeypatch.setattr(os, "fdatasync", gate)
    return gate


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[WriteJournal]:
    opened = WriteJournal(tmp_path / "journal.jsonl", TABLE)
    opened.open()
    yield opened
    opened.close()


def put(journal: WriteJournal, n: int) -> None:
    item = {"pk": {"S": f"K#{n}"}, "sk": {"S": "A"}, "n": {"N": str(n)}}
    journal.record("PutItem", {"TableName": TABLE, "Item": item})


def in_background(call: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as error:  # kept for the test to look at
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_a_request_that_wrote_waits_for_its_fsync_and_one_that_did_not_waits_for_nothing(
    journal: WriteJournal, gated: GatedSync
) -> None:
    # Given a request that wrote, its fsync under way (held at the gate)
    before = journal.written
    put(journal, 1)
    waiter, errors = in_background(lambda: journal.sync(since=before))
    assert gated.entered.acquire(timeout=DEADLINE_S)
    # Then it is not answered while the fsync has not returned
    waiter.join(0.2)  # a window for a wrong early answer, not a speed assertion
    assert waiter.is_alive()
    # And a request that wrote nothing is answered at once, fsync or not
    journal.sync(since=journal.written)
    # When the fsync returns / Then the writer is answered, and its line is in the file
    gated.gate.set()
    waiter.join(DEADLINE_S)
    assert not waiter.is_alive()
    assert errors == []
    (line,) = journal.path.read_text().splitlines()
    assert json.loads(line)["k"] == [{"S": "K#1"}, {"S": "A"}]


def test_writes_that_arrive_during_an_fsync_share_the_next_one(
    journal: WriteJournal, gated: GatedSync
) -> None:
    # Given a first write whose fsync is under way
    put(journal, 0)
    first = in_background(lambda: journal.sync(since=0))
    assert gated.entered.acquire(timeout=DEADLINE_S)
    # When five more requests write meanwhile, each then waiting to be answered
    waiters = []
    for n in range(1, 6):
        before = journal.written
        put(journal, n)
        waiters.append(in_background(functools.partial(journal.sync, since=before)))
    gated.gate.set()
    for thread, errors in [first, *waiters]:
        thread.join(DEADLINE_S)
        assert errors == []
    # Then all six are durable after two fsyncs: the first one's, and one for the five together
    assert journal.appended == 6
    assert gated.calls == journal.fsyncs == 2
    assert len(journal.path.read_text().splitlines()) == 6


def test_a_failed_fsync_fails_every_request_waiting_on_it_and_every_later_one(
    journal: WriteJournal, gated: GatedSync
) -> None:
    # Given a disk whose fsync fails
    gated.fail_with = OSError(5, "Input/output error")
    gated.gate.set()
    before = journal.written
    # When a request writes / Then it is refused rather than acknowledged
    put(journal, 1)
    with pytest.raises(JournalError, match="Input/output error"):
        journal.sync(since=before)
    # And so is every later write (a failed fsync may have dropped pages: nothing is trusted again)
    before = journal.written
    put(journal, 2)
    with pytest.raises(JournalError):
        journal.sync(since=before)


def test_a_reset_makes_everything_before_it_durable_with_no_fsync_of_its_own(
    journal: WriteJournal, gated: GatedSync
) -> None:
    # Given a write not yet synced
    gated.gate.set()
    before = journal.written
    put(journal, 1)
    # When a full save empties the journal (the save holds everything now)
    journal.reset()
    # Then the request that wrote is answered without another fsync, and the journal is empty
    journal.sync(since=before)
    assert gated.calls == 1  # the reset's own
    assert journal.path.read_text() == ""
