"""The CLI's one escaping helper: control characters from agents and users are shown, never acted on."""

from __future__ import annotations

import pytest
from rich.text import Text

from fleetlink.cli.render import escape, visible


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("\x1b]0;owned\x07", "\\e]0;owned\\x07"),
        ("\x1b[2J\x1b[H", "\\e[2J\\e[H"),
        ("\x9b31m", "\\x9b31m"),
        ("a\rb", "a\\rb"),
        ("a\nb\tc", "a\\nb\\tc"),
        ("\u202egnp.exe", "\\u202egnp.exe"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("plain text, ünïcode", "plain text, ünïcode"),
    ],
)
def test_control_characters_are_written_out(sent: str, shown: str) -> None:
    assert visible(sent) == shown


def test_a_block_keeps_its_lines_and_tabs_only() -> None:
    assert visible("one\n\ttwo\x1b[A\r", block=True) == "one\n\ttwo\\e[A\\r"


def test_escape_also_makes_markup_inert() -> None:
    # Given a string with rich markup and an escape; When escaped and rendered as markup
    rendered = Text.from_markup(escape("[bold red]x[/] \x1b[2J")).plain
    # Then both print as sent, inert
    assert rendered == "[bold red]x[/] \\e[2J"
