"""Validation of the tunnel wire models: every hostile input is refused with a field error."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fleetlink.contract.tunnels import (
    MAX_EVENTS_PER_REQUEST,
    MAX_ROUTES,
    MAX_SECRET_BYTES,
    EventsBatch,
    StatusReport,
    TunnelCreate,
    TunnelPatch,
)

GOOD: dict[str, Any] = {
    "provider": "self_hosted",
    "name": "web",
    "mode": "http",
    "local_target": "127.0.0.1:8080",
}


def route(prefix: str, target: str = "127.0.0.1:9000") -> dict[str, Any]:
    return {"path_prefix": prefix, "local_target": target}


def test_a_full_tunnel_is_accepted() -> None:
    """Given a tunnel with routes and a secret; then it validates."""
    tunnel = TunnelCreate(
        **GOOD, routes=[route("/api"), route("/")], public_hostname="App.Example.com", secret="t"
    )
    assert tunnel.public_hostname == "app.example.com"


@pytest.mark.parametrize(
    "changes",
    [
        {"provider": "frp"},
        {"provider": "cloudflare", "mode": "tcp"},
        {"mode": "udp"},
        {"name": "Web Server"},
        {"local_target": "8080"},
        {"local_target": "localhost"},
        {"local_target": "127.0.0.1:70000"},
        {"local_target": "http://127.0.0.1:80"},
        {"local_target": "[::1]"},
        {"routes": [route("api")]},
        {"routes": [route("/api"), route("/api")]},
        {"routes": [route(f"/r{i}") for i in range(MAX_ROUTES + 1)]},
        {"routes": [route("/a b")]},
        {"mode": "tcp", "routes": [route("/api")]},
        {"secret": "x" * (MAX_SECRET_BYTES + 1)},
        {"public_hostname": "not a host"},
        {"unexpected": 1},
    ],
)
def test_hostile_tunnels_are_refused(changes: dict[str, Any]) -> None:
    """Given a tunnel body with one bad field; then validation fails."""
    with pytest.raises(ValidationError):
        TunnelCreate(**{**GOOD, **changes})


def test_ipv6_targets_are_written_in_brackets() -> None:
    """Given an IPv6 target in brackets; then it validates."""
    assert TunnelCreate(**{**GOOD, "local_target": "[::1]:8080"}).local_target == "[::1]:8080"


def test_patch_applies_the_route_rules() -> None:
    """Given a patch with duplicate prefixes; then it is refused."""
    with pytest.raises(ValidationError):
        TunnelPatch(routes=[route("/a"), route("/a")])


@pytest.mark.parametrize(
    "body",
    [
        {"health": "great"},
        {"health": "up", "public_url": "javascript:x"},
        {"health": "up", "error_code": "Has Spaces"},
    ],
)
def test_status_reports_with_unknown_words_are_refused(body: dict[str, Any]) -> None:
    """Given a status report with an unknown health word or a bad field; then it is refused."""
    with pytest.raises(ValidationError):
        StatusReport(**body)


def event(**changes: Any) -> dict[str, Any]:
    return {"level": "info", "event_type": "health_up", "message": "up", "created_at": 1, **changes}


@pytest.mark.parametrize(
    "events",
    [
        [],
        [event()] * (MAX_EVENTS_PER_REQUEST + 1),
        [event(level="fatal")],
        [event(event_type="boom")],
        [event(data={"x": "y" * 5000})],
        [event(message="")],
    ],
)
def test_bad_event_batches_are_refused(events: list[dict[str, Any]]) -> None:
    """Given an empty, oversized or malformed event batch; then it is refused."""
    with pytest.raises(ValidationError):
        EventsBatch(events=events)


def test_a_full_event_batch_is_accepted() -> None:
    """Given exactly the maximum number of events; then the batch validates."""
    assert len(EventsBatch(events=[event()] * MAX_EVENTS_PER_REQUEST).events) == MAX_EVENTS_PER_REQUEST
