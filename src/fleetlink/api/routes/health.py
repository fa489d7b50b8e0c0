"""Health, readiness and the API's own description."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

import fleetlink
from fleetlink.api.deps import get_deps
from fleetlink.api.problems import problem
from fleetlink.contract.agents import Health

router = Router()

SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"


@router.get("/health", summary="Liveness: the function runs", tags=["health"])
def health() -> Health:
    return Health(status="ok", version=fleetlink.__version__)


@router.get("/health/ready", summary="Readiness: the table answers", tags=["health"])
def ready() -> Response[Any]:
    from fleetlink.store.health import table_answers

    get_deps()  # binds the table
    if not table_answers():
        return problem(503, "not-ready", "the table does not answer", headers={"Retry-After": "5"})
    body = Health(status="ready", version=fleetlink.__version__, checks={"table": "ok"})
    return Response(200, "application/json", body.model_dump_json())


@router.get("/openapi.json", summary="This document", tags=["health"])
def openapi_json() -> dict[str, Any]:
    from fleetlink.api.app import openapi_document

    return openapi_document()


@router.get("/docs", summary="Swagger UI", tags=["health"])
def docs() -> Response[str]:
    import json

    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    from fleetlink.api.app import openapi_document

    html = generate_swagger_html(
        json.dumps(openapi_document()),
        f"{SWAGGER_UI}/swagger-ui-bundle.js",
        f"{SWAGGER_UI}/swagger-ui.css",
        "/v1/openapi.json",
        None,
    )
    return Response(200, "text/html", html)
