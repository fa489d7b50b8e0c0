"""Least privilege: each function's role allows what fleetlink.api.permissions declares, and no more.

The declaration itself is checked against the calls the code really makes in
tests/integration/test_permissions.py; here the synthesized policies are checked against it.
"""

from __future__ import annotations

from typing import Any

import pytest

from fleetlink.api.functions import function_spec
from fleetlink.api.permissions import TableAccess
from infra import constants
from tests.infra.conftest import Synthesized
from tests.infra.helpers import from_data_stack, listed, only_resource, role_id_of_function, role_statements

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]

NAMES = constants.FUNCTION_NAMES
XRAY = {("xray:PutTelemetryRecords", "*"), ("xray:PutTraceSegments", "*")}
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}


def resource_name(app: Synthesized, name: str, resource: Any) -> str:
    """A policy resource as a readable name: table, index/<n>, key, own-logs, dead-letters, * (or raw)."""
    table_id, _ = only_resource(app.data_json, "AWS::DynamoDB::Table")
    key_id, _ = only_resource(app.data_json, "AWS::KMS::Key")
    secret_id, _ = only_resource(app.data_json, "AWS::SecretsManager::Secret")
    data_value = from_data_stack(app, resource)
    if data_value == {"Fn::GetAtt": [table_id, "Arn"]}:
        return "table"
    if data_value == {"Ref": secret_id}:
        return "cursor-key"
    if data_value == {"Fn::GetAtt": [key_id, "Arn"]}:
        return "key"
    if isinstance(resource, dict) and "Fn::Join" in resource:
        separator, parts = resource["Fn::Join"]
        if (
            separator == ""
            and len(parts) == 2
            and from_data_stack(app, parts[0]) == {"Fn::GetAtt": [table_id, "Arn"]}
        ):
            return str(parts[1]).removeprefix("/")
    own_logs = app.logical_id(app.stacks.api.fleet_functions[name].log_group)
    if resource == {"Fn::GetAtt": [own_logs, "Arn"]}:
        return "own-logs"
    if resource == {"Fn::GetAtt": [app.logical_id(app.stacks.api.dead_letters.queue), "Arn"]}:
        return "dead-letters"
    return resource if isinstance(resource, str) else repr(resource)


def allowed(app: Synthesized, name: str) -> set[tuple[str, str]]:
    """(action, readable resource) pairs the function's role allows."""
    pairs = set()
    for statement in role_statements(app, name):
        assert statement["Effect"] == "Allow"
        for action in listed(statement["Action"]):
            for resource in listed(statement["Resource"]):
                pairs.add((action, resource_name(app, name, resource)))
    return pairs


def expected_table_pairs(access: TableAccess) -> set[tuple[str, str]]:
    return {(action, scope) for action, scope in access.calls()}


@pytest.mark.parametrize("name", NAMES)
def test_dynamodb_grants_are_exactly_the_declared_ones(any_app: Synthesized, name: str) -> None:
    # Given the function's role in the synthesized api stack
    granted = {(a, r) for a, r in allowed(any_app, name) if a.startswith("dynamodb:")}
    # Then it allows the declared actions on the table's ARN and Query on the declared index ARNs only
    assert granted == expected_table_pairs(function_spec(name).access)


@pytest.mark.parametrize("name", NAMES)
def test_kms_grants_are_what_the_table_access_needs_through_dynamodb_only(
    default_app: Synthesized, name: str
) -> None:
    # Given the function's statements on the table's key
    statements = [
        s
        for s in role_statements(default_app, name)
        if any(a.startswith("kms:") for a in listed(s["Action"]))
    ]
    expected = function_spec(name).access.key_actions()
    granted = {
        (action, resource_name(default_app, name, r))
        for s in statements
        for action in listed(s["Action"])
        for r in listed(s["Resource"])
    }
    # Then they are the key actions its table access needs, on that key, only via DynamoDB
    assert granted == {(action, "key") for action in expected}
    for statement in statements:
        via = statement["Condition"]["StringEquals"]["kms:ViaService"]
        assert via == {"Fn::Join": ["", ["dynamodb.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}


@pytest.mark.parametrize("name", NAMES)
def test_function_writes_only_to_its_own_log_group(default_app: Synthesized, name: str) -> None:
    granted = {(a, r) for a, r in allowed(default_app, name) if a.startswith("logs:")}
    assert granted == {(action, "own-logs") for action in LOGS}


@pytest.mark.parametrize("name", NAMES)
def test_function_reads_only_the_cursor_key_secret(any_app: Synthesized, name: str) -> None:
    # Given the role's Secrets Manager grants
    granted = {(a, r) for a, r in allowed(any_app, name) if a.startswith("secretsmanager:")}
    # Then it may read the value of the cursor key secret, and nothing else there
    assert granted == {("secretsmanager:GetSecretValue", "cursor-key")}


@pytest.mark.parametrize("name", NAMES)
def test_function_allows_nothing_else(default_app: Synthesized, name: str) -> None:
    # Given everything the role allows
    granted = allowed(default_app, name)
    # When DynamoDB, KMS, the cursor key, logs and X-Ray are taken away
    rest = {
        (a, r) for a, r in granted if not a.startswith(("dynamodb:", "kms:", "logs:", "secretsmanager:"))
    } - XRAY
    # Then only a scheduled function keeps one more thing: sending its failures to the dead-letter queue
    if function_spec(name).duties:
        assert {a for a, _ in rest} <= {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
        assert {r for _, r in rest} == {"dead-letters"}
    elif function_spec(name).buckets:  # presigned links (tests/infra/test_releases_bucket.py)
        assert {a for a, _ in rest} == set().union(*(b.actions for b in function_spec(name).buckets))
    else:
        assert rest == set()
    assert granted >= XRAY


@pytest.mark.parametrize("name", NAMES)
def test_no_wildcard_action_and_no_scan(any_app: Synthesized, name: str) -> None:
    actions = {
        action for statement in role_statements(any_app, name) for action in listed(statement["Action"])
    }
    assert not [action for action in actions if "*" in action]
    assert "dynamodb:Scan" not in actions


@pytest.mark.parametrize("name", NAMES)
def test_role_has_no_managed_policy(default_app: Synthesized, name: str) -> None:
    role = default_app.api_json["Resources"][role_id_of_function(default_app, name)]
    assert "ManagedPolicyArns" not in role["Properties"]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}
    ]


def test_declaring_scan_is_refused() -> None:
    with pytest.raises(ValueError, match="Scan"):
        TableAccess(table=frozenset({"dynamodb:Scan"}))


def test_declaring_a_wildcard_is_refused() -> None:
    with pytest.raises(ValueError, match=r"dynamodb:\*"):
        TableAccess(table=frozenset({"dynamodb:*"}))


def test_an_unregistered_function_is_an_error() -> None:
    with pytest.raises(KeyError, match="FUNCTIONS"):
        function_spec("no-such-function")
