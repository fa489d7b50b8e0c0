"""Agent releases: the release key, publishing signed artifacts, download links, the install script."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter, Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.api.params import AgentIdPath
from fleetlink.contract.rollout import VersionReported
from fleetlink.core.agents.versions import ReportVersion
from fleetlink.core.errors import Forbidden, Unauthenticated
from fleetlink.core.releases.model import (
    AnnounceRelease,
    Release,
    ReleaseDownload,
    ReleaseKey,
    ReleaseList,
    ReleaseUpload,
    SetReleaseKey,
)
from fleetlink.core.releases.service import LATEST
from fleetlink.core.roles import Role
from fleetlink.release.install_script import render_install_script
from fleetlink.release.manifest import PLATFORMS, VERSION_PATTERN

router = Router()
VIEWER = security.operator_access(Role.VIEWER, ["releases"])
ADMIN = security.operator_access(Role.ADMIN, ["releases"])
AGENT = security.agent_access(["agent"])

VersionPath = Annotated[str, PathParam(pattern=VERSION_PATTERN, max_length=48, description="e.g. 0.2.0")]
VersionOrLatest = Annotated[
    str, PathParam(pattern=f"({VERSION_PATTERN})|^latest$", max_length=48, description="a version or latest")
]
PLATFORM_PATTERN = "^(" + "|".join(PLATFORMS) + ")$"
PlatformPath = Annotated[
    str, PathParam(pattern=PLATFORM_PATTERN, description="linux-x86_64 or linux-aarch64")
]
PlatformQuery = Annotated[str, Query(pattern=PLATFORM_PATTERN, description="linux-x86_64 or linux-aarch64")]


@router.put(
    "/releases/key", summary="Set the release key (a change needs the current key's signature)", **ADMIN
)
def set_release_key(command: Annotated[SetReleaseKey, Body()]) -> ReleaseKey:
    return get_deps().release_service.set_key(command, security.operator_actor(router))


#: A route that answers 404 without a path parameter: no release key was set yet.
NO_KEY_YET: dict[int, OpenAPIResponse] = {
    404: {
        "description": "No release key yet (the first `fleetlink release publish` sets it)",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
}


@router.get(
    "/releases/key",
    summary="The release public key the fleet pins",
    tags=["releases"],
    responses={200: {"description": "The release key"}, **NO_KEY_YET},
)
def get_release_key() -> ReleaseKey:
    return get_deps().release_service.key()


@router.post(
    "/releases",
    summary="Announce a signed release; answers a presigned upload link",
    status_code=201,
    **ADMIN,
)
def announce_release(command: Annotated[AnnounceRelease, Body()]) -> ReleaseUpload:
    return get_deps().release_service.announce(command, security.operator_actor(router))


@router.post(
    "/releases/<version>/<platform>/complete",
    summary="Publish an uploaded release (its size checked in the bucket)",
    **ADMIN,
)
def complete_release(version: VersionPath, platform: PlatformPath) -> Release:
    return get_deps().release_service.complete(version, platform, security.operator_actor(router))


@router.get("/releases", summary="List releases, newest version first", **VIEWER)
def list_releases(platform: Annotated[str | None, Query(pattern=PLATFORM_PATTERN)] = None) -> ReleaseList:
    return ReleaseList(items=get_deps().release_service.list(platform))


def token_or_signed_agent(app: BaseRouter, next_middleware: security.NextMiddleware) -> Response[Any]:
    """Route middleware: a signed, active agent (an upgrade), or a valid registration token (an install)."""
    event = security.http_event(app)
    headers = {name.lower() for name in (event.headers or {})}
    if "signature-input" in headers:
        security.authenticate_agent(app)
    else:
        try:
            get_deps().registration.redeem(security.bearer_token(event))
        except Unauthenticated as error:
            raise security.refused(error, event) from None
    return next_middleware(app)


@router.get(
    "/agent/releases/<version>",
    summary="A published release's signed manifest and a presigned download link",
    middlewares=[token_or_signed_agent],
    security=[{"registrationToken": []}, {"agentSignature": []}],
    tags=["releases"],
)
def download_release(version: VersionOrLatest, platform: PlatformQuery) -> ReleaseDownload:
    return get_deps().release_service.download(version if version != LATEST else LATEST, platform)


def _api_url(app: Router) -> str:
    event = security.http_event(app)
    headers = {name.lower(): value for name, value in (event.headers or {}).items()}
    host = headers.get("host") or event.request_context.domain_name
    scheme = (headers.get("x-forwarded-proto") or "https").split(",")[0].strip()
    return f"{scheme}://{host}"


@router.get(
    "/agent/install.sh",
    summary="The one-line installer: curl -fsSL <url>/v1/agent/install.sh | sh -s -- --token <token>",
    tags=["releases"],
    responses={
        200: {
            "description": "POSIX shell script",
            "content": {"text/x-shellscript": {"schema": {"type": "string"}}},
        },
        **NO_KEY_YET,
    },
)
def install_script() -> Response[str]:
    key = get_deps().release_service.key()
    url = _api_url(router)
    script = render_install_script(url, key.key_id, key.public_key)
    return Response(200, "text/x-shellscript; charset=utf-8", script, headers={"Cache-Control": "no-store"})


@router.post(
    "/agents/<agent_id>/version",
    summary="An agent reports the release it runs after an upgrade or a rollback (kept in its history)",
    **AGENT,
)
def report_version(agent_id: AgentIdPath, command: Annotated[ReportVersion, Body()]) -> VersionReported:
    from fleetlink.core.agents.versions import VersionService

    caller = security.calling_agent(router)
    if caller.agent_id != agent_id:
        raise Forbidden("an agent reports only its own version", code="not-your-agent")
    deps = get_deps()
    agent = VersionService(deps.registrations, deps.clock).report(caller, command)
    return VersionReported(agent_id=agent.agent_id, agent_version=agent.agent_version or command.version)
