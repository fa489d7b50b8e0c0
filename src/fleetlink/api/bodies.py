"""Request bodies: JSON only, and nested no deeper than a parser can take, checked before parsing.

Powertools' request validation reads a route's body according to its Content-Type (JSON, form
data, multipart). Every fleetlink body is JSON, so :class:`JsonBodyValidation` answers any other
media type with a 415, and measures a body's nesting with a scan that never recurses before
``json.loads`` (a C parser that recurses: ``[`` x 10,000 would raise RecursionError) sees it.
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)

from fleetlink.core.errors import InvalidInput, UnsupportedMediaType

#: Deepest nesting of arrays and objects a request body may have (a 400 beyond it). Fields that
#: hold free-form JSON set their own, smaller limit (e.g. a task's ``input``: a 422).
MAX_JSON_DEPTH = 512
#: The media types a body may be sent as (parameters such as ``charset=utf-8`` are allowed).
JSON_MEDIA_TYPE = "application/json"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or any ``application/*+json``, with or without parameters."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == JSON_MEDIA_TYPE or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text, without parsing it (strings skipped).

    Unbalanced text gives some number; the parser rejects it afterwards.
    """
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def check_json_depth(text: str, limit: int = MAX_JSON_DEPTH) -> None:
    if json_depth(text) > limit:
        raise InvalidInput(f"the JSON body is nested deeper than {limit} levels", code="json-too-deep")


class JsonBodyValidation(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation, with bodies read as bounded JSON only."""

    def _get_body(self, app: Any) -> Any:
        content_type = (app.current_event.headers.get("content-type") or "").strip()
        if content_type and not is_json_media_type(content_type):
            raise UnsupportedMediaType(
                f"request bodies are {JSON_MEDIA_TYPE}, not {content_type[:100]}",
                code="unsupported-media-type",
            )
        check_json_depth(app.current_event.decoded_body or "")
        return self._parse_json_data(app)
