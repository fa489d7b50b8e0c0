"""RFC 9457 problem responses, and the exception handlers that produce them."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from fleetlink.contract.problems import PROBLEM_CONTENT_TYPE, problem_document
from fleetlink.core.errors import FleetlinkError, Throttled, Unavailable

logger = Logger(service="fleetlink")


#: Members of an error's ``extra`` that a problem body carries (RFC 9457 extension members).
PUBLIC_EXTENSIONS = frozenset({"required_role"})


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response[str]:
    body = problem_document(status, code, detail, title=title, instance=instance, errors=errors)
    body = {**(extensions or {}), **body}
    return Response(status, PROBLEM_CONTENT_TYPE, json.dumps(body), headers=headers)


def problem_from_error(error: FleetlinkError, instance: str | None = None) -> Response[str]:
    headers = None
    if isinstance(error, Throttled | Unavailable):
        headers = {"Retry-After": str(error.retry_after_s)}
    extensions = {name: value for name, value in error.extra.items() if name in PUBLIC_EXTENSIONS}
    return problem(
        error.status,
        error.code,
        error.detail,
        title=error.title,
        headers=headers,
        instance=instance,
        extensions=extensions,
    )


def _field_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    """Where and why, never the offending value (it may be a secret)."""
    return [
        {
            "loc": [str(part) for part in item.get("loc", ())],
            "type": item.get("type", "invalid"),
            "msg": str(item.get("msg", "invalid value")),
        }
        for item in error.errors()
    ]


def install_problem_handlers(app: APIGatewayHttpResolver) -> None:
    """Every failure leaves as a problem document; only real bugs are 500s (logged, detail hidden)."""

    def instance() -> str:
        return str(app.current_event.path)

    @app.exception_handler(FleetlinkError)
    def _domain(error: FleetlinkError) -> Response[str]:
        if error.status >= 500:
            logger.warning("request failed", extra={"problem": error.code, "status": error.status})
        # a 401 names no path: its body is the same whichever agent id an unauthenticated caller tried
        return problem_from_error(error, instance() if error.status != 401 else None)

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response[str]:
        errors = _field_errors(error)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(
                400,
                "malformed-json",
                "the request body is not valid JSON",
                errors=errors,
                instance=instance(),
            )
        return problem(
            422,
            "validation-failed",
            "the request does not match the schema",
            errors=errors,
            instance=instance(),
        )

    @app.exception_handler(UnicodeDecodeError)
    def _not_utf8(_: UnicodeDecodeError) -> Response[str]:
        return problem(400, "malformed-json", "the request body is not UTF-8 JSON", instance=instance())

    @app.not_found
    def _not_found(_: NotFoundError) -> Response[str]:
        return problem(404, "no-such-route", "no such route", instance=instance())

    @app.exception_handler(Exception)
    def _bug(error: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return problem(500, "internal", "an internal error occurred", instance=instance())
