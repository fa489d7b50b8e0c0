"""Operator roles in AWS: one managed policy per role, derived from the routes' declared roles."""

from __future__ import annotations

import fnmatch
import itertools
from typing import Any

import pytest
from infra.constructs.http_api import Authorization, routes
from infra.constructs.operator_roles import STAGE, resource_path

from fleetlink.api.roles import role_table, route_roles, write_routes
from fleetlink.core.roles import ROLE_ORDER, Role
from tests.infra.conftest import Synthesized


def _flat(value: Any) -> str:
    """A CloudFormation string (Fn::Join of literals and references) with references as ``<ref>``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_flat(part) for part in parts)
    return "<ref>"


def _invoked(resource: Any) -> str:
    """``METHOD /path`` an execute-api ARN allows (what follows the stage)."""
    arn = _flat(resource)
    method_and_path = arn.split(f"/{STAGE}/", 1)[1]
    method, _, path = method_and_path.partition("/")
    return f"{method} /{path}"


def test_every_operator_route_has_a_role_and_every_role_reaches_it_upwards() -> None:
    # Given the registry's routes, and those API Gateway authorizes with IAM
    iam_routes = {(r.method, r.path) for r in routes() if r.authorization is Authorization.IAM}
    table = role_table()
    # Then every IAM route is in some role (none is in no role), and admin holds every one
    assert iam_routes == set(route_roles())
    assert set(table[Role.ADMIN]) == iam_routes
    # And each role holds everything of the role below it
    for lower, higher in itertools.pairwise(ROLE_ORDER):
        assert set(table[lower]) < set(table[higher])


def test_viewer_holds_no_write_and_every_write_needs_operator_or_admin() -> None:
    # Given the routes that may change something
    writes = write_routes()
    # Then the viewer role holds none of them, and each operator write needs operator or admin
    assert not set(role_table()[Role.VIEWER]) & writes
    assert all(route_roles()[key] is not Role.VIEWER for key in writes if key in route_roles())


def test_no_role_pattern_reaches_a_route_of_a_higher_role() -> None:
    # Given each role's IAM resource patterns (path parameters as *, which IAM lets span slashes)
    roles = route_roles()
    for role, keys in role_table().items():
        patterns = [f"{method} {resource_path(path)}" for method, path in keys]
        # Then no route the role may not call matches one of them
        beyond = [f"{m} {p}" for (m, p), needed in roles.items() if not role.allows(needed)]
        leaks = [route for route in beyond if any(fnmatch.fnmatchcase(route, p) for p in patterns)]
        assert not leaks, f"{role}: {leaks}"


@pytest.mark.infra
@pytest.mark.xdist_group("cdk")
def test_the_template_has_one_managed_policy_per_role_with_exactly_its_routes(
    default_app: Synthesized,
) -> None:
    # Given the synthesized api stack
    policies = {
        body["Properties"]["ManagedPolicyName"]: body["Properties"]["PolicyDocument"]["Statement"]
        for body in default_app.api_json["Resources"].values()
        if body["Type"] == "AWS::IAM::ManagedPolicy"
    }
    # Then there are three, one per role, each allowing execute-api:Invoke on its role's routes only
    assert sorted(policies) == sorted(f"fleetlink-dev-{role}" for role in ROLE_ORDER)
    for role, keys in role_table().items():
        (statement,) = policies[f"fleetlink-dev-{role}"]
        assert statement["Effect"] == "Allow"
        assert statement["Action"] == "execute-api:Invoke"
        allowed = {_invoked(resource) for resource in statement["Resource"]}
        assert allowed == {f"{method} {resource_path(path)}" for method, path in keys}
    # And each is exported for users and roles to attach
    exports = {o.get("Export", {}).get("Name") for o in default_app.api_json["Outputs"].values()}
    assert {f"fleetlink-dev-api-{role}-policy-arn" for role in ROLE_ORDER} <= exports
