"""Reading synthesized templates: resources by type, cross-stack references, IAM statements."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import Synthesized


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """{logical id: resource} of one type."""
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def only_resource(template: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    """The logical id and body of the single resource of a type."""
    found = resources_of_type(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def from_data_stack(app: Synthesized, reference: Any) -> Any:
    """The data-stack output value a cross-stack reference (weak or strong) reads, else None."""
    outputs: dict[str, Any] = app.data_json["Outputs"]
    if isinstance(reference, dict) and "Fn::GetStackOutput" in reference:
        read = reference["Fn::GetStackOutput"]
        assert read["StackName"] == app.stacks.data.stack_name
        return outputs[read["OutputName"]]["Value"]
    if isinstance(reference, dict) and "Fn::ImportValue" in reference:
        exports = {output.get("Export", {}).get("Name"): output["Value"] for output in outputs.values()}
        return exports[reference["Fn::ImportValue"]]
    return None


def listed(value: Any) -> list[Any]:
    """A policy's Action or Resource as a list."""
    return value if isinstance(value, list) else [value]


def role_id_of_function(app: Synthesized, name: str) -> str:
    function = app.resource(app.stacks.api.functions[name])
    role_id: str = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return role_id


def role_statements(app: Synthesized, name: str) -> list[dict[str, Any]]:
    """The statements of every policy of the function's role: inline, attached and managed."""
    role_id = role_id_of_function(app, name)
    role = app.api_json["Resources"][role_id]
    statements = [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    for policy in resources_of_type(app.api_json, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def granted_pairs(app: Synthesized, name: str) -> set[tuple[str, str]]:
    """Every (action, resource as JSON text) the function's role allows."""
    import json

    pairs = set()
    for statement in role_statements(app, name):
        assert statement["Effect"] == "Allow"
        for action in listed(statement["Action"]):
            for resource in listed(statement["Resource"]):
                pairs.add((action, json.dumps(resource, sort_keys=True)))
    return pairs
