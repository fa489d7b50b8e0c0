"""Free-form JSON values (a task's input, a relay record's value): checked as DynamoDB stores them.

One iterative walk (no recursion, so depth cannot exhaust the stack) checks the JSON types, string
keys, finite numbers, bounded integers and the nesting depth.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator

#: DynamoDB stores documents nested up to 32 levels; a free-form value is held to the same.
MAX_VALUE_DEPTH = 32
#: Integers stay within what every JSON reader keeps exactly (and far inside DynamoDB's 38 digits).
MAX_SAFE_INT = 2**53 - 1


def check_json_value(value: Any, *, max_depth: int = MAX_VALUE_DEPTH, max_int: int = MAX_SAFE_INT) -> None:
    """Raise ValueError unless ``value`` holds only JSON types with string keys, finite numbers and
    integers within ``±max_int``, with lists and objects nested at most ``max_depth`` levels."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if item is None or isinstance(item, bool | str):
            continue
        if isinstance(item, int):
            if abs(item) > max_int:
                raise ValueError(f"integers must be within ±{max_int}")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("numbers must be finite (JSON has no NaN or Infinity)")
        elif isinstance(item, dict | list | tuple):
            if depth > max_depth:
                raise ValueError(f"nests deeper than {max_depth} levels")
            if isinstance(item, dict) and not all(isinstance(name, str) for name in item):
                raise ValueError("object keys must be strings")
            children = item.values() if isinstance(item, dict) else item
            pending += [(child, depth + 1) for child in children]
        else:
            raise ValueError(f"{type(item).__name__} is not a JSON type")


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    check_json_value(value)
    return value


#: A JSON object as DynamoDB can store it (a 422 otherwise).
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]
