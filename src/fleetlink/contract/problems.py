"""RFC 9457 problem documents, as every side writes and reads them: the API's handlers, the dev
stack's HTTP layer, the node's tunnel proxy and the clients (one place for the type URIs)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
#: A problem's ``type`` is this followed by its code, e.g. ``urn:fleetlink:problem:agent-revoked``.
PROBLEM_TYPE_BASE = "urn:fleetlink:problem:"
#: The code of a heartbeat whose sequence is not greater than the last one the server saw.
SEQUENCE_STALE = "heartbeat-sequence-stale"


def problem_type(code: str) -> str:
    """The ``type`` URI of the problem ``code``."""
    return PROBLEM_TYPE_BASE + code


def problem_code(type_uri: str) -> str:
    """The code a problem's ``type`` names (its last segment)."""
    return type_uri.rsplit(":", 1)[-1]


def problem_document(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The problem's JSON body: ``type``, ``title`` (default: the status phrase), ``status``, ``detail``."""
    document: dict[str, Any] = {
        "type": problem_type(code),
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        document["instance"] = instance
    if errors is not None:
        document["errors"] = errors
    return document
