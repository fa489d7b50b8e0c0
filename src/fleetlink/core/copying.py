"""One model built from another that shares field names with it (a record from the command that
made it, an answer from the record it shows), instead of restating each field."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from pydantic import BaseModel

Built = TypeVar("Built")

#: The fields two kinds share, by (target, source): worked out once per pair.
_SHARED: dict[tuple[type, type], frozenset[str]] = {}


def field_names(kind: type) -> frozenset[str]:
    """The fields a pydantic model or a dataclass declares."""
    if issubclass(kind, BaseModel):
        return frozenset(kind.model_fields)
    if dataclasses.is_dataclass(kind):
        return frozenset(field.name for field in dataclasses.fields(kind))
    raise TypeError(f"{kind.__name__} is neither a pydantic model nor a dataclass")


def copied(target: type[Built], source: object, /, **overrides: object) -> Built:
    """A ``target`` holding each field that ``source`` declares too, then ``overrides`` (the fields
    only ``target`` has, or the ones it takes otherwise). A pydantic ``target`` validates as usual."""
    pair = (target, type(source))
    shared = _SHARED.get(pair)
    if shared is None:
        shared = _SHARED[pair] = field_names(target) & field_names(type(source))
    return target(**{name: getattr(source, name) for name in shared if name not in overrides}, **overrides)
