"""A function's Lambda handler by its registry name: what ``functions/<name>/handler.py`` exports.

The dev stack and the tests call this by import, so they run from an installed package as well as
from a source checkout; the entry files also install the Lambda's import trimming, which this
does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetlink.api.functions import function_spec

LambdaHandler = Callable[[dict[str, Any], Any], Any]


def function_entry(function_name: str) -> LambdaHandler:
    """The handler of an HTTP function (its resolver) or of a scheduled one (its duties)."""
    if function_spec(function_name).serves_http:
        from fleetlink.api.app import lambda_entry

        return lambda_entry(function_name)
    from fleetlink.api.scheduled import scheduled_entry

    return scheduled_entry(function_name)
