"""Tunnels: the words (providers, modes, health, events), the commands operators and agents send,
and the stored records.

Limits (each a 4xx problem when broken): at most ``MAX_ROUTES`` routes a tunnel, path prefixes
unique per tunnel and starting with ``/``, a secret of at most ``MAX_SECRET_BYTES`` bytes, at most
``MAX_EVENTS_PER_REQUEST`` events a request. ``mode`` must be one the provider supports
(``PROVIDER_MODES``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.ids import IdPrefix, id_pattern

MAX_ROUTES = 32
MAX_SECRET_BYTES = 4096
#: A sealed secret is the plaintext plus key material and base64; room for an RSA-4096 envelope.
MAX_SEALED_SECRET_CHARS = 12_288
MAX_EVENTS_PER_REQUEST = 100
MAX_EVENT_MESSAGE_CHARS = 1024
MAX_EVENT_DATA_BYTES = 4096
MAX_ERROR_MESSAGE_CHARS = 1024
MAX_PRIORITY = 1000

TUNNEL_ID_PATTERN = id_pattern(IdPrefix.TUNNEL)
ROUTE_ID_PATTERN = id_pattern(IdPrefix.ROUTE)


class Provider(StrEnum):
    CLOUDFLARE = "cloudflare"
    NGROK = "ngrok"
    TAILSCALE = "tailscale"
    SELF_HOSTED = "self_hosted"


class Mode(StrEnum):
    HTTP = "http"
    TCP = "tcp"


class Health(StrEnum):
    """``up`` serving; ``degraded`` running but part of it fails (a route's target, the relay);
    ``down`` not serving; ``unknown`` not checked yet, or the agent went silent."""

    UP = "up"
    DOWN = "down"
    DEGRADED = "degraded"
    UNKNOWN = "unknown"


class EventLevel(StrEnum):
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class EventType(StrEnum):
    TUNNEL_START = "tunnel_start"
    TUNNEL_STOP = "tunnel_stop"
    HEALTH_UP = "health_up"
    HEALTH_DOWN = "health_down"
    HEALTH_DEGRADED = "health_degraded"
    CONFIG_CHANGED = "config_changed"
    ROUTE_ADDED = "route_added"
    ROUTE_REMOVED = "route_removed"
    SECRET_ROTATED = "secret_rotated"  # noqa: S105 - an event name
    ERROR = "error"
    RESTART = "restart"


#: Which modes each provider can carry (Cloudflare's TCP needs cloudflared on the client too).
PROVIDER_MODES: dict[Provider, frozenset[Mode]] = {
    Provider.CLOUDFLARE: frozenset({Mode.HTTP}),
    Provider.NGROK: frozenset({Mode.HTTP, Mode.TCP}),
    Provider.TAILSCALE: frozenset({Mode.HTTP, Mode.TCP}),
    Provider.SELF_HOSTED: frozenset({Mode.HTTP, Mode.TCP}),
}

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_PATH_PREFIX = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,255}$")


def split_host_port(target: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` → (host, port); ``ValueError`` says what is wrong."""
    if target.startswith("["):
        host, sep, port_text = target[1:].partition("]:")
        if not sep:
            raise ValueError("an IPv6 target is written [address]:port")
        ipaddress.IPv6Address(host)
    else:
        host, sep, port_text = target.rpartition(":")
        if not sep or not host:
            raise ValueError("local_target must be host:port")
        if not _HOSTNAME.match(host):
            raise ValueError("local_target's host is not a hostname or IPv4 address")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("local_target's port must be 1-65535")
    return host, int(port_text)


def _check_target(value: str) -> str:
    split_host_port(value)
    return value


def _check_path_prefix(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("path_prefix must start with /")
    if not _PATH_PREFIX.match(value):
        raise ValueError("path_prefix holds characters a URL path cannot (or is over 256 characters)")
    return value


def _check_hostname(value: str) -> str:
    if not _HOSTNAME.match(value) or "." not in value:
        raise ValueError("public_hostname must be a DNS name such as app.example.com")
    return value.lower()


def _check_data(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, separators=(",", ":")).encode()) > MAX_EVENT_DATA_BYTES:
        raise ValueError(f"data is over {MAX_EVENT_DATA_BYTES} bytes as JSON")
    return value


def _check_secret(value: str) -> str:
    if len(value.encode()) > MAX_SECRET_BYTES:
        raise ValueError(f"secret is over {MAX_SECRET_BYTES} bytes")
    return value


LocalTarget = Annotated[str, Field(min_length=3, max_length=262), AfterValidator(_check_target)]
PathPrefix = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_check_path_prefix)]
TunnelName = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")]
Hostname = Annotated[str, Field(max_length=253), AfterValidator(_check_hostname)]
Secret = Annotated[str, Field(min_length=1), AfterValidator(_check_secret)]
SealedSecret = Annotated[str, Field(min_length=8, max_length=MAX_SEALED_SECRET_CHARS, pattern=r"^fl1\.")]
Priority = Annotated[int, Field(ge=0, le=MAX_PRIORITY)]


class _Strict(DeferredModel):
    model_config = ConfigDict(extra="forbid")


class RouteSpec(_Strict):
    """One path-prefix route: the longest matching prefix wins, then the higher priority."""

    path_prefix: PathPrefix
    local_target: LocalTarget
    priority: Priority = 0
    enabled: bool = True


def _check_routes(routes: list[RouteSpec] | None) -> None:
    if routes is None:
        return
    if len(routes) > MAX_ROUTES:
        raise ValueError(f"at most {MAX_ROUTES} routes a tunnel")
    prefixes = [route.path_prefix for route in routes]
    if len(set(prefixes)) != len(prefixes):
        raise ValueError("each path_prefix may appear once per tunnel")


class TunnelCreate(_Strict):
    """``POST /v1/agents/{agent_id}/tunnels``."""

    provider: Provider
    name: TunnelName
    mode: Mode = Mode.HTTP
    local_target: LocalTarget
    public_hostname: Hostname | None = None
    enabled: bool = True
    routes: list[RouteSpec] = Field(default_factory=list)
    secret: Secret | None = Field(default=None, repr=False)  # never in a repr (debug logs)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.mode not in PROVIDER_MODES[self.provider]:
            raise ValueError(f"provider {self.provider} does not carry mode {self.mode}")
        if self.routes and self.mode is not Mode.HTTP:
            raise ValueError("routes need mode http")
        _check_routes(self.routes)
        return self


class TunnelPatch(_Strict):
    """``PATCH /v1/tunnels/{tunnel_id}``: only the fields given change; ``routes`` replaces all."""

    enabled: bool | None = None
    local_target: LocalTarget | None = None
    public_hostname: Hostname | None = None
    routes: list[RouteSpec] | None = None
    secret: Secret | None = Field(default=None, repr=False)  # never in a repr (debug logs)

    @model_validator(mode="after")
    def _routes(self) -> Self:
        _check_routes(self.routes)
        return self


class Route(RouteSpec):
    route_id: Annotated[str, Field(pattern=ROUTE_ID_PATTERN)]


class StatusReport(_Strict):
    """``PUT /v1/tunnels/{tunnel_id}/status``."""

    health: Health
    public_url: Annotated[str, Field(max_length=2048, pattern=r"^(https?|tcp|ssh)://")] | None = None
    error_code: Annotated[str, Field(max_length=64, pattern=r"^[a-z0-9_.-]+$")] | None = None
    error_message: Annotated[str, Field(max_length=MAX_ERROR_MESSAGE_CHARS)] | None = None


class EventIn(_Strict):
    level: EventLevel
    event_type: EventType
    message: Annotated[str, Field(min_length=1, max_length=MAX_EVENT_MESSAGE_CHARS)]
    data: Annotated[dict[str, Any], AfterValidator(_check_data)] = Field(default_factory=dict)
    created_at: Annotated[int, Field(ge=0, lt=10**13)]


class EventsBatch(_Strict):
    """``POST /v1/tunnels/{tunnel_id}/events``."""

    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)]


# --- records ---------------------------------------------------------------------------------------


class TunnelFields(DeferredModel):
    """Which tunnel, on which agent, through what, to where: the first fields of the stored record
    and of the tunnel as answered (``fleetlink.contract.tunnels.Tunnel``), in this order."""

    tunnel_id: str
    agent_id: str
    provider: Provider
    name: str
    mode: Mode
    local_target: str
    public_hostname: str | None = None


class TunnelRecord(TunnelFields):
    """A tunnel as stored: the operator's desired config, the agent's last reported status, and the
    secret only in its sealed form (``sealed_secret``, opened by the agent alone)."""

    enabled: bool
    routes: list[Route] = Field(default_factory=list)
    sealed_secret: str | None = None
    #: What the agent reported last (``unknown`` until it does).
    health: Health = Health.UNKNOWN
    public_url: str | None = None
    last_error_code: str | None = None
    last_error_message: str | None = None
    #: When the agent last reported a change of status.
    status_at: int | None = None
    created_at: int
    updated_at: int
    version: int | None = None

    def reported(self) -> StatusReport:
        """The status as the agent last reported it (to tell a changed report from a repeat)."""
        return StatusReport.model_validate(
            {word: getattr(self, kept) for word, kept in _REPORT_KEPT_AS.items()}
        )

    def with_report(self, report: StatusReport, at: int) -> TunnelRecord:
        """The record holding ``report`` as the agent's status, reported at ``at``."""
        kept = {kept: getattr(report, word) for word, kept in _REPORT_KEPT_AS.items()}
        return self.model_copy(update=kept | {"status_at": at})


#: Where a tunnel record keeps each field of the agent's status report.
_REPORT_KEPT_AS = {
    "health": "health",
    "public_url": "public_url",
    "error_code": "last_error_code",
    "error_message": "last_error_message",
}


class TunnelEvent(DeferredModel):
    """One entry of a tunnel's event log (expires after the retention, by TTL)."""

    event_id: str
    tunnel_id: str
    agent_id: str
    level: EventLevel
    event_type: EventType
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: int
