"""Numbers as DynamoDB stores them and JSON carries them: finite, bounded, never a boolean.

DynamoDB refuses NaN and infinities, more than 38 significant digits and magnitudes outside
1e-130..1e125; JSON has no NaN or Infinity. Python's JSON parser accepts all of these, and
pydantic's lax mode takes ``true`` for 1, so request fields use these types instead.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from fleetlink.core.json_values import MAX_SAFE_INT

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
