"""Health, readiness and the API's own description (Swagger UI served from here, no CDN)."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam

import fleetlink
from fleetlink.api.deps import get_deps
from fleetlink.api.problems import problem
from fleetlink.api.security import api_document
from fleetlink.contract.agents import ServiceHealth
from fleetlink.core.errors import NotFound

router = Router()

#: Where the page loads Swagger UI from: this API (the swagger-ui-py package ships the dist files).
ASSETS_PATH = "/v1/docs/assets"
#: The files the page needs, and their media types; nothing else of the package is served.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}
AssetName = Annotated[str, PathParam(pattern=r"^[a-z.-]{1,40}$", description="A Swagger UI file")]


@router.get("/health", summary="Liveness: the function runs", tags=["health"])
def health() -> ServiceHealth:
    return ServiceHealth(status="ok", version=fleetlink.__version__)


@router.get("/health/ready", summary="Readiness: the table answers", tags=["health"])
def ready() -> Response[Any]:
    from fleetlink.store.health import table_answers

    get_deps()  # binds the table
    if not table_answers():
        return problem(503, "not-ready", "the table does not answer", headers={"Retry-After": "5"})
    body = ServiceHealth(status="ready", version=fleetlink.__version__, checks={"table": "ok"})
    return Response(200, "application/json", body.model_dump_json())


@router.get("/openapi.json", summary="This document", tags=["health"])
def openapi_json() -> dict[str, Any]:
    return api_document(router)


@router.get(
    "/docs",
    summary="Swagger UI",
    tags=["health"],
    responses={200: {"description": "Swagger UI", "content": {"text/html": {"schema": {"type": "string"}}}}},
)
def docs() -> Response[str]:
    import json

    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    html = generate_swagger_html(
        json.dumps(api_document(router)),
        f"{ASSETS_PATH}/swagger-ui-bundle.js",
        f"{ASSETS_PATH}/swagger-ui.css",
        "/v1/openapi.json",
        None,
    )
    return Response(200, "text/html", html)


@cache
def _assets_dir() -> Path:
    """swagger-ui-py's static folder, found without importing the package (it would load Jinja)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise NotFound("Swagger UI is not installed (the server extra ships it)", code="no-such-asset")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@router.get(
    "/docs/assets/<name>",
    summary="Swagger UI's script and style sheet, served by the API itself",
    tags=["health"],
    compress=True,
    cache_control="public, max-age=86400",
)
def docs_asset(name: AssetName) -> Response[str]:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no asset {name}", code="no-such-asset")
    return Response(200, media_type, (_assets_dir() / name).read_text(encoding="utf-8"))
