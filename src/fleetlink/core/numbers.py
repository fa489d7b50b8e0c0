"""Numbers as DynamoDB stores them and JSON carries them: finite, bounded, never a boolean.

DynamoDB refuses NaN and infinities, more than 38 significant digits and magnitudes outside
1e-130..1e125; JSON has no NaN or Infinity. Python's JSON parser accepts all of these, and
pydantic's lax mode takes ``true`` for 1, so request fields use these types instead.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field

#: Integers stay within what every JSON reader keeps exactly (and far inside DynamoDB's 38 digits).
MAX_SAFE_INT = 2**53 - 1
MAX_METRIC = 1e15
#: Smaller non-zero magnitudes are refused rather than silently rounded (DynamoDB stops at 1e-130).
MIN_METRIC_MAGNITUDE = 1e-30


def _storable_float(value: float) -> float:
    if value != 0 and abs(value) < MIN_METRIC_MAGNITUDE:
        raise ValueError(f"a non-zero number must be at least {MIN_METRIC_MAGNITUDE:g} in magnitude; send 0")
    return value


StrictInt = Annotated[int, Field(strict=True)]
Count = Annotated[int, Field(strict=True, ge=0, le=MAX_SAFE_INT)]
EpochMs = Annotated[int, Field(strict=True, ge=0, le=MAX_SAFE_INT)]
Metric = Annotated[
    float,
    Field(strict=True, allow_inf_nan=False, ge=-MAX_METRIC, le=MAX_METRIC),
    AfterValidator(_storable_float),
]


def check_json_numbers(value: Any) -> None:
    """Raise ValueError for a non-finite float or an integer beyond ``MAX_SAFE_INT`` anywhere inside
    ``value`` (walked without recursion, so depth cannot exhaust the stack)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (JSON has no NaN or Infinity)")
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_SAFE_INT:
            raise ValueError(f"integers must be within ±{MAX_SAFE_INT}")
