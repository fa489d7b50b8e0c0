"""The whole API's OpenAPI document and route table, from every HTTP function's own resolver."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from fleetlink.api.functions import http_functions
from fleetlink.api.openapi import describe, document_problems
from fleetlink.api.resolver import resolver_for


def _openapi(function_name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(resolver_for(function_name).get_openapi_json_schema(**describe()))
    return document_problems(document)


@cache
def openapi_document() -> dict[str, Any]:
    """The whole API's OpenAPI 3.1 document: every function's routes, merged."""
    documents = [_openapi(spec.name) for spec in http_functions()]
    merged = documents[0]
    merged_schemas = merged.setdefault("components", {}).setdefault("schemas", {})
    for document in documents[1:]:
        merged["paths"].update(document.get("paths", {}))
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            # two functions' models of one name must be one model, or a $ref would name the wrong one
            if merged_schemas.setdefault(name, schema) != schema:
                raise ValueError(f"two different OpenAPI schemas are named {name!r}: rename one model")
    return merged


def route_table() -> list[tuple[str, str, str]]:
    """(function, METHOD, OpenAPI path) of every HTTP route, from the functions' own resolvers."""
    table = []
    for spec in http_functions():
        paths = _openapi(spec.name).get("paths", {})
        table += [(spec.name, method.upper(), path) for path, methods in paths.items() for method in methods]
    return sorted(table)
