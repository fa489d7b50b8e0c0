"""Hybrid logical clock values: ``"<13-digit wall-clock ms>-<4 hex digits>"``, ordered by (ms, counter).

A node stamps each of its writes with an hlc that is strictly higher than the one before, whatever
its wall clock does: :func:`tick` takes the wall clock when it is ahead and otherwise counts on
from the last value. The text form is fixed-width with lowercase hex, so comparing the canonical
strings orders them exactly like the tuples (what a DynamoDB condition ``hlc < :hlc`` relies on).
The node id completes the stamp: ``(ms, counter, node_id)`` is unique across the fleet, and since
records are kept per node, two nodes' hlcs never compete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The wire form; parsing also accepts uppercase hex, :meth:`Hlc.__str__` always writes lowercase.
HLC_PATTERN = r"^[0-9]{13}-[0-9a-fA-F]{4}$"
MIN_MS = 10**12  # the smallest 13-digit value (2001-09-09)
MAX_MS = 10**13 - 1
MAX_COUNTER = 0xFFFF

_HLC_RE = re.compile(HLC_PATTERN)


class InvalidHlc(ValueError):
    """Text that is not an hlc, or parts out of range."""


@dataclass(frozen=True, order=True, slots=True)
class Hlc:
    """One hybrid logical clock value; ``str()`` gives the canonical wire form."""

    ms: int
    counter: int = 0

    def __post_init__(self) -> None:
        if not MIN_MS <= self.ms <= MAX_MS:
            raise InvalidHlc(f"hlc milliseconds {self.ms} are not 13 digits")
        if not 0 <= self.counter <= MAX_COUNTER:
            raise InvalidHlc(f"hlc counter {self.counter} is outside 0-{MAX_COUNTER:#x}")

    def __str__(self) -> str:
        return f"{self.ms:013d}-{self.counter:04x}"

    @classmethod
    def parse(cls, text: str) -> Hlc:
        """The hlc written as ``text``; raises :class:`InvalidHlc`."""
        if not isinstance(text, str) or not _HLC_RE.fullmatch(text):
            raise InvalidHlc("hlc must look like 1764512345678-0001 (13 digits, '-', 4 hex digits)")
        ms, counter = text.split("-")
        return cls(int(ms), int(counter, 16))


def tick(last: Hlc | None, wall_ms: int) -> Hlc:
    """The next hlc after ``last``: the wall clock if it is ahead, else ``last`` counted on by one.

    Never goes backwards: a wall clock that stepped back (or reads before 2001) only makes the
    counter grow; a full counter moves on to the next millisecond.
    """
    if last is None:
        return Hlc(min(max(wall_ms, MIN_MS), MAX_MS), 0)
    wall_ms = min(wall_ms, MAX_MS)
    if wall_ms > last.ms:
        return Hlc(wall_ms, 0)
    if last.counter < MAX_COUNTER:
        return Hlc(last.ms, last.counter + 1)
    return Hlc(last.ms + 1, 0)
