"""Request bodies: JSON only, nested no deeper than a parser can take (checked before parsing), and
within the parser's other limits (checked while parsing): every JSON route answers them with a 400.

Powertools' request validation reads a route's body according to its Content-Type (JSON, form
data, multipart). Every fleetlink body is JSON, so :class:`JsonBodyValidation` answers any other
media type with a 415, and measures a body's nesting with a scan that never recurses before
``json.loads`` (a C parser that recurses: ``[`` x 10,000 would raise RecursionError) sees it.
"""

from __future__ import annotations

import json
import re
import sys
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

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
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


def check_no_lone_surrogates(value: Any) -> None:
    """A ``\\ud800``-style escape without its pair parses to a string no UTF-8 store can hold: a 400."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise InvalidInput(
            "the JSON body holds an unpaired UTF-16 surrogate escape", code="json-limit"
        ) from None


class JsonBodyValidation(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation, with bodies read as bounded JSON only."""

    def _get_body(self, app: Any) -> Any:
        content_type = (app.current_event.headers.get("content-type") or "").strip()
        if content_type and not is_json_media_type(content_type):
            raise UnsupportedMediaType(
                f"request bodies are {JSON_MEDIA_TYPE}, not {content_type[:100]}",
                code="unsupported-media-type",
            )
        text = app.current_event.decoded_body or ""
        check_json_depth(text)
        try:
            body = self._parse_json_data(app)
        except (ValueError, RecursionError) as error:
            if isinstance(error, json.JSONDecodeError):
                raise
            # past a limit of the parser, e.g. an integer of more digits than Python converts
            raise InvalidInput(
                "the JSON body is past a parser limit (an integer of over "
                f"{sys.get_int_max_str_digits()} digits, or nesting too deep)",
                code="json-limit",
            ) from None
        if _SURROGATE_ESCAPE.search(text):
            check_no_lone_surrogates(body)
        return body
