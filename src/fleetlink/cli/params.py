"""One parser for the quantities flags take: durations (``90``, ``90s``, ``10m``, ``2h``, ``1d``), sizes
(``512``, ``64KiB``, ``1MB``) and counts or percentages (``5``, ``10%``), each checked against the
bounds the server enforces before anything is sent, so a flag that the API would refuse fails here,
naming the flag and the range.

Flags use them through :func:`duration_option`, :func:`size_option` and :func:`share_option`, which
also give the help a real metavar (``DURATION``, ``SIZE``, ``N|PCT%``)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import typer

_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_QUANTITY = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$")


def format_seconds(seconds: int) -> str:
    """The shortest exact spelling: ``90s``, ``10m``, ``2h``, ``1d``."""
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_duration(text: str) -> int:
    """Whole seconds from ``90``, ``90s``, ``10m``, ``2h`` or ``1d``; ValueError otherwise."""
    match = _QUANTITY.match(text.lower())
    if match is None or match.group(2) not in _DURATION_UNITS:
        raise ValueError(f"{text!r} is not a duration like 90, 90s, 10m, 2h or 1d")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """Bytes from ``512``, ``64KiB``, ``1MB`` (k/M/G: powers of 1000; KiB/MiB/GiB: of 1024)."""
    match = _QUANTITY.match(text.lower())
    if match is None or match.group(2) not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size like 512, 64KiB or 1MB")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


@dataclass(frozen=True)
class Share:
    """A count (``5``) or a percentage of the targets (``10%``)."""

    count: int | None = None
    percent: int | None = None

    def of(self, total: int) -> int:
        """The count this share is of ``total`` targets: a percentage rounds up, and is at least 1."""
        if self.count is not None:
            return self.count
        assert self.percent is not None
        return max(1, math.ceil(total * self.percent / 100))

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent is not None else str(self.count)


def parse_share(text: str) -> Share:
    """``5`` (at least 1) or ``10%`` (1-100); ValueError otherwise."""
    stripped = text.strip()
    if stripped.endswith("%"):
        number = stripped[:-1].strip()
        if not number.isdigit() or not 1 <= int(number) <= 100:
            raise ValueError(f"{text!r}: a percentage is 1% to 100%")
        return Share(percent=int(number))
    if not stripped.isdigit() or int(stripped) < 1:
        raise ValueError(f"{text!r} is not a count (1 or more) or a percentage like 10%")
    return Share(count=int(stripped))


class _Quantity:
    """A typer parser: parse, then check ``low <= value <= high`` (the server's bounds)."""

    def __init__(self, parse: Any, low: int | None, high: int | None, show: Any = str) -> None:
        self._parse = parse
        self._low = low
        self._high = high
        self._show = show
        self.__name__ = parse.__name__  # typer names its parameter type after the parser

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # a default, already parsed
        try:
            parsed = self._parse(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        number = parsed if isinstance(parsed, int) else parsed.count
        if number is not None:
            if self._low is not None and number < self._low:
                raise typer.BadParameter(f"{value!r} is below the minimum, {self._show(self._low)}")
            if self._high is not None and number > self._high:
                raise typer.BadParameter(f"{value!r} is above the maximum, {self._show(self._high)}")
        return parsed


def duration_parser(low: int | None = None, high: int | None = None) -> Any:
    return _Quantity(parse_duration, low, high, format_seconds)


def size_parser(low: int | None = None, high: int | None = None) -> Any:
    return _Quantity(parse_size, low, high)


def share_parser(high: int | None = None) -> Any:
    return _Quantity(parse_share, 1, high)


def _bounds(low: int | None, high: int | None, show: Any) -> str:
    if low is not None and high is not None:
        return f" ({show(low)} to {show(high)})"
    if low is not None:
        return f" (at least {show(low)})"
    return f" (at most {show(high)})" if high is not None else ""


def duration_option(
    *names: str,
    help: str,
    low: int | None = None,
    high: int | None = None,
    default: int | None = None,
    **options: Any,
) -> Any:
    """A typer option taking a duration (whole seconds), bounds in its help and checked on parse;
    ``default`` (seconds) is shown as a duration (``5m``)."""
    shown = f"; default {format_seconds(default)}" if default is not None else ""
    if default is not None:
        options.setdefault("show_default", False)
    return typer.Option(
        *names,
        parser=duration_parser(low, high),
        metavar="DURATION",
        help=help + _bounds(low or None, high, format_seconds) + shown,
        **options,
    )


def size_option(
    *names: str, help: str, low: int | None = None, high: int | None = None, **options: Any
) -> Any:
    """A typer option taking a size in bytes."""
    return typer.Option(
        *names, parser=size_parser(low, high), metavar="SIZE", help=help + _bounds(low, high, str), **options
    )


def share_option(*names: str, help: str, high: int | None = None, **options: Any) -> Any:
    """A typer option taking a count or a percentage of the targets (``5`` or ``10%``)."""
    return typer.Option(*names, parser=share_parser(high), metavar="N|PCT%", help=help, **options)


_PLAIN_TYPES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH", "PosixPath": "PATH"}


def _help_type(self: Any, ctx: Any) -> str | None:
    """What the help shows for a parameter's value: nothing for a flag, its metavar when it has one,
    else the choices or a plain word (TEXT, INTEGER, PATH) rather than a Python type in brackets."""
    if getattr(self, "is_flag", False) or getattr(self, "count", False) or self.param_type_name == "argument":
        return None  # a flag takes no value; an argument's name is its metavar
    if self.metavar is not None:
        return str(self.metavar)
    label = str(self.display_type(ctx)).strip("<>")
    repeated = label.startswith("list[")
    label = label.removeprefix("list[").removesuffix("]")
    label = _PLAIN_TYPES.get(label, label)
    return label + ("..." if repeated or self.nargs != 1 else "")


def _usage_name(self: Any) -> str:
    """An argument in the usage line: ``AGENT``, ``[AGENT]``, ``KEY=VALUE...`` (POSIX style)."""
    name = str(self.display_name_raw)
    if self.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if self.required else f"[{name}]"


def install_help_types() -> None:
    """Make every command's help show real metavars (see :func:`_help_type`) and a POSIX usage line."""
    from typer import core

    for parameter_class in (core.TyperOption, core.TyperArgument):
        parameter_class.display_type_rich = _help_type  # type: ignore[method-assign]
    core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]
