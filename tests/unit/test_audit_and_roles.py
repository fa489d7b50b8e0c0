"""Audit entries never hold a secret and record old -> new; roles hold the roles below them; the
console's permissions hide what a role may not do."""

from __future__ import annotations

import pytest

from fleetlink.console.fleet import Permissions, parse_pairs
from fleetlink.core.audit import (
    MAX_VALUE_CHARS,
    REDACTED,
    AuditRecord,
    RequestOrigin,
    changes_between,
    set_request_origin,
)
from fleetlink.core.roles import Role, parse_role


def test_changes_hold_only_what_differs_and_secrets_only_as_changed() -> None:
    before = {"enabled": True, "name": "web", "sealed_secret": "sealed-AAA", "token": None}
    after = {"enabled": False, "name": "web", "sealed_secret": "sealed-BBB", "token": "tok.secret"}
    changes = changes_between(before, after)
    assert set(changes) == {"enabled", "sealed_secret", "token"}
    assert (changes["enabled"].old, changes["enabled"].new) == (True, False)
    assert (changes["sealed_secret"].old, changes["sealed_secret"].new) == (REDACTED, REDACTED)
    assert (changes["token"].old, changes["token"].new) == (None, REDACTED)


def test_a_long_value_is_cut() -> None:
    changes = changes_between({}, {"command": "x" * 10_000})
    assert len(str(changes["command"].new)) <= MAX_VALUE_CHARS + 1


def test_an_entry_carries_the_request_origin() -> None:
    set_request_origin(RequestOrigin("alice", source_ip="10.0.0.7", user_agent="fleetlink/1"))
    try:
        entry = AuditRecord.of("alice", "task.create", "tsk_x", 1_800_000_000_000)
    finally:
        set_request_origin(None)
    assert (entry.source_ip, entry.user_agent, entry.success) == ("10.0.0.7", "fleetlink/1", True)
    assert entry.audit_id.startswith("aud_")


def test_each_role_holds_the_roles_below_it() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR)
    assert Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR)
    assert not Role.OPERATOR.allows(Role.ADMIN)
    assert parse_role(" Viewer ") is Role.VIEWER
    with pytest.raises(ValueError, match="viewer, operator, admin"):
        parse_role("root")


def test_the_console_shows_a_control_only_to_a_role_that_may_use_it() -> None:
    routes = {"GET /v1/tasks": Role.VIEWER, "POST /v1/tasks": Role.OPERATOR, "POST /v1/x/revoke": Role.ADMIN}
    viewer, operator = Permissions(Role.VIEWER, routes), Permissions(Role.OPERATOR, routes)
    assert viewer.can("GET /v1/tasks")
    assert not viewer.can("POST /v1/tasks")
    assert operator.can("POST /v1/tasks")
    assert not operator.can("POST /v1/x/revoke")
    assert Permissions(None, routes).can("POST /v1/x/revoke")  # IAM decides: shown, refused by the API
    assert not operator.can("DELETE /v1/unknown")


def test_tag_pairs_parse_or_name_the_bad_one() -> None:
    assert parse_pairs("env=prod, role=web") == {"env": "prod", "role": "web"}
    with pytest.raises(ValueError, match="'oops'"):
        parse_pairs("env=prod oops")
