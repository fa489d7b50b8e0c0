"""Free-form JSON values (a task's ``input``): bounded in depth, as DynamoDB bounds stored documents."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator

#: DynamoDB stores documents nested up to 32 levels; a free-form value is held to the same.
MAX_VALUE_DEPTH = 32


def value_depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (a scalar: 0), without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            pending += [(child, depth) for child in children]
    return deepest


def _within_depth(value: dict[str, Any]) -> dict[str, Any]:
    if value_depth(value) > MAX_VALUE_DEPTH:
        raise ValueError(f"nested deeper than {MAX_VALUE_DEPTH} levels")
    return value


#: A JSON object nested at most ``MAX_VALUE_DEPTH`` levels (a 422 beyond).
JsonObject = Annotated[dict[str, Any], AfterValidator(_within_depth)]
