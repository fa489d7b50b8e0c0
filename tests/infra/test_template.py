"""The synthesized templates: the table is the one table.py describes, the functions are wired to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from infra.app import FleetlinkStacks, build_app, stage_of
from infra.stacks.api_stack import function_code
from infra.stacks.data_stack import table_schema

from fleetlink.store import table as table_definition
from infra import constants

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]

TABLE_TYPE = "AWS::DynamoDB::Table"
FUNCTION_TYPE = "AWS::Lambda::Function"
EXPECTED = table_definition.create_table_request("any-name")


@pytest.fixture(scope="module")
def outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the app stages its assets."""
    return tmp_path_factory.mktemp("cdk.out")


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory, outdir: Path) -> FleetlinkStacks:
    """The app as cdk.json configures it (feature flags, default stage), built once per module."""
    context = json.loads((constants.REPO_ROOT / "cdk.json").read_text())["context"]
    # As the CLI does: name each resource's staged asset directory in its metadata.
    context["aws:cdk:enable-asset-metadata"] = True
    app = cdk.App(context=context, outdir=str(outdir))
    return build_app(app, layers_build_dir=tmp_path_factory.mktemp("layers-build"))


@pytest.fixture(scope="module")
def data_template(stacks: FleetlinkStacks) -> Template:
    """The data stack's template."""
    return Template.from_stack(stacks.data)


@pytest.fixture(scope="module")
def api_template(stacks: FleetlinkStacks) -> Template:
    """The api stack's template."""
    return Template.from_stack(stacks.api)


def only_resource(template: Template, resource_type: str) -> tuple[str, dict[str, Any]]:
    """The logical id and body of the single resource of a type."""
    resources = template.find_resources(resource_type)
    assert len(resources) == 1, f"expected one {resource_type}, found {sorted(resources)}"
    logical_id, resource = next(iter(resources.items()))
    return logical_id, dict(resource)


def table_properties(template: Template) -> dict[str, Any]:
    """The properties of the single table."""
    properties: dict[str, Any] = only_resource(template, TABLE_TYPE)[1]["Properties"]
    return properties


def key_roles(key_schema: list[dict[str, str]]) -> dict[str, str]:
    """A KeySchema as {KeyType: AttributeName}."""
    return {key["KeyType"]: key["AttributeName"] for key in key_schema}


def indexes_by_name(indexes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """GlobalSecondaryIndexes as {IndexName: {keys, projection}}, order-free."""
    return {
        index["IndexName"]: {"keys": key_roles(index["KeySchema"]), "projection": index["Projection"]}
        for index in indexes
    }


def function_resource(stacks: FleetlinkStacks, template: Template, name: str) -> dict[str, Any]:
    """The template resource of the function for ``name``."""
    resource = cast(cdk.CfnElement, stacks.api.functions[name].node.default_child)
    body: dict[str, Any] = template.to_json()["Resources"][stacks.api.get_logical_id(resource)]
    return body


def function_properties(stacks: FleetlinkStacks, template: Template, name: str) -> dict[str, Any]:
    """The template properties of the function for ``name``."""
    properties: dict[str, Any] = function_resource(stacks, template, name)["Properties"]
    return properties


def from_data_stack(stacks: FleetlinkStacks, data_template: Template, reference: Any) -> Any:
    """The data-stack output value a cross-stack reference (weak or strong) reads, else None."""
    outputs: dict[str, Any] = data_template.to_json()["Outputs"]
    if isinstance(reference, dict) and "Fn::GetStackOutput" in reference:
        read = reference["Fn::GetStackOutput"]
        assert read["StackName"] == stacks.data.stack_name
        return outputs[read["OutputName"]]["Value"]
    if isinstance(reference, dict) and "Fn::ImportValue" in reference:
        exports = {output.get("Export", {}).get("Name"): output["Value"] for output in outputs.values()}
        return exports[reference["Fn::ImportValue"]]
    return None


# --- the table: the same definition the dev stack and the tests create ---------------------------


def test_table_key_schema_is_the_one_table_py_describes(data_template: Template) -> None:
    # Given the synthesized data stack
    # When its table's key schema is read
    keys = key_roles(table_properties(data_template)["KeySchema"])
    # Then it is the partition and sort key create_table_request() uses
    assert keys == key_roles(EXPECTED["KeySchema"])


def test_table_attribute_definitions_are_the_ones_table_py_describes(data_template: Template) -> None:
    # Given the synthesized data stack
    # When its table's attribute definitions are read
    definitions = table_properties(data_template)["AttributeDefinitions"]
    # Then they are exactly the key attributes (and types) of create_table_request()
    as_pairs = {(item["AttributeName"], item["AttributeType"]) for item in definitions}
    assert len(as_pairs) == len(definitions)
    assert as_pairs == {
        (item["AttributeName"], item["AttributeType"]) for item in EXPECTED["AttributeDefinitions"]
    }


def test_table_global_secondary_indexes_are_the_ones_table_py_describes(data_template: Template) -> None:
    # Given the synthesized data stack
    # When its table's global secondary indexes are read
    indexes = indexes_by_name(table_properties(data_template).get("GlobalSecondaryIndexes", []))
    # Then names, key schemas and projections match create_table_request(), nothing more, nothing less
    assert indexes == indexes_by_name(EXPECTED["GlobalSecondaryIndexes"])


def test_table_ttl_is_on_the_table_py_attribute(data_template: Template) -> None:
    # Given the synthesized data stack
    # When its table's TTL specification is read
    ttl = table_properties(data_template)["TimeToLiveSpecification"]
    # Then TTL is enabled on the attribute create_table() turns it on for
    assert ttl == {"AttributeName": table_definition.TTL_ATTRIBUTE, "Enabled": True}


def test_table_billing_is_on_demand_as_table_py_describes(data_template: Template) -> None:
    # Given the synthesized data stack
    # When its table's billing mode is read
    billing_mode = table_properties(data_template)["BillingMode"]
    # Then it is the billing mode of create_table_request(): pay per request
    assert billing_mode == EXPECTED["BillingMode"] == "PAY_PER_REQUEST"


def test_table_has_point_in_time_recovery(data_template: Template) -> None:
    # Given the synthesized data stack
    # When its table's recovery settings are read
    recovery = table_properties(data_template)["PointInTimeRecoverySpecification"]
    # Then point-in-time recovery is on
    assert recovery == {"PointInTimeRecoveryEnabled": True}


def test_table_has_deletion_protection(data_template: Template) -> None:
    # Given the synthesized data stack
    # When its table's properties are read
    properties = table_properties(data_template)
    # Then the table cannot be deleted until protection is turned off
    assert properties["DeletionProtectionEnabled"] is True


def test_table_and_its_key_are_retained(data_template: Template) -> None:
    # Given the synthesized data stack
    # When the table and the key are looked at
    retained = [
        only_resource(data_template, resource_type)[1] for resource_type in (TABLE_TYPE, "AWS::KMS::Key")
    ]
    # Then both outlive a stack deletion or replacement
    for resource in retained:
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_table_is_encrypted_with_its_own_kms_key(data_template: Template) -> None:
    # Given the synthesized data stack and its one customer-managed key
    key_id, _ = only_resource(data_template, "AWS::KMS::Key")
    # When the table's encryption settings are read
    sse = table_properties(data_template)["SSESpecification"]
    # Then the table is encrypted with that key (not the AWS-owned one)
    assert sse == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}}


def test_table_key_rotates(data_template: Template) -> None:
    # Given the synthesized data stack
    # When its KMS key is read
    _, key = only_resource(data_template, "AWS::KMS::Key")
    # Then automatic key rotation is on
    assert key["Properties"]["EnableKeyRotation"] is True


def test_table_translation_refuses_what_it_cannot_build(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a table definition that grew a part the CDK translation does not know
    grown = {**EXPECTED, "StreamSpecification": {"StreamEnabled": True}}
    monkeypatch.setattr(table_definition, "create_table_request", lambda _name: grown)
    # When the CDK schema is derived from it
    # Then synthesis stops instead of silently dropping the part
    with pytest.raises(ValueError, match="StreamSpecification"):
        table_schema()


# --- the functions -----------------------------------------------------------------------------


def test_there_is_one_function_per_name(stacks: FleetlinkStacks, api_template: Template) -> None:
    # Given the synthesized api stack
    # When its Lambda functions are counted
    functions = api_template.find_resources(FUNCTION_TYPE)
    # Then there is exactly one per function name, each built from its own directory
    assert len(functions) == len(constants.FUNCTION_NAMES)
    assert set(stacks.api.functions) == set(constants.FUNCTION_NAMES)


@pytest.mark.parametrize("name", constants.FUNCTION_NAMES)
def test_function_runs_python_313(stacks: FleetlinkStacks, api_template: Template, name: str) -> None:
    # Given the synthesized api stack
    # When the function's runtime is read
    runtime = function_properties(stacks, api_template, name)["Runtime"]
    # Then it is Python 3.13
    assert runtime == "python3.13"


@pytest.mark.parametrize("name", constants.FUNCTION_NAMES)
def test_function_runs_on_arm64(stacks: FleetlinkStacks, api_template: Template, name: str) -> None:
    # Given the synthesized api stack
    # When the function's architectures are read
    architectures = function_properties(stacks, api_template, name)["Architectures"]
    # Then it runs on Graviton
    assert architectures == ["arm64"]


@pytest.mark.parametrize("name", constants.FUNCTION_NAMES)
def test_function_handler_is_lambda_handler_in_handler_py(
    stacks: FleetlinkStacks, api_template: Template, name: str
) -> None:
    # Given the synthesized api stack
    # When the function's handler is read
    handler = function_properties(stacks, api_template, name)["Handler"]
    # Then Lambda calls lambda_handler in handler.py
    assert handler == "handler.lambda_handler"


@pytest.mark.parametrize("name", constants.FUNCTION_NAMES)
def test_function_code_is_its_own_directory_only(
    stacks: FleetlinkStacks, api_template: Template, outdir: Path, name: str
) -> None:
    # Given the synthesized api stack and the function's staged code asset
    staged = outdir / function_resource(stacks, api_template, name)["Metadata"]["aws:asset:path"]
    # When its files are compared with functions/<name>
    source = constants.FUNCTIONS_DIR / name
    # Then the asset holds exactly that directory's files, byte for byte
    assert relative_files(staged) == relative_files(source)
    assert (staged / "handler.py").read_bytes() == (source / "handler.py").read_bytes()


@pytest.mark.parametrize("name", constants.FUNCTION_NAMES)
def test_function_table_name_is_the_table(
    stacks: FleetlinkStacks, data_template: Template, api_template: Template, name: str
) -> None:
    # Given the synthesized stacks and the table's logical id in the data stack
    table_id, _ = only_resource(data_template, TABLE_TYPE)
    # When the function's TABLE_NAME is followed back into the data stack
    reference = function_properties(stacks, api_template, name)["Environment"]["Variables"]["TABLE_NAME"]
    # Then it is the table's name
    assert from_data_stack(stacks, data_template, reference) == {"Ref": table_id}


@pytest.mark.parametrize("name", constants.FUNCTION_NAMES)
def test_function_has_the_powertools_and_auth_settings(
    stacks: FleetlinkStacks, api_template: Template, name: str
) -> None:
    # Given the synthesized api stack
    # When the function's environment is read
    variables = function_properties(stacks, api_template, name)["Environment"]["Variables"]
    # Then service name, metrics namespace and operator auth mode are set
    assert {key: variables.get(key) for key in constants.COMMON_ENVIRONMENT} == {
        "POWERTOOLS_SERVICE_NAME": "fleetlink",
        "POWERTOOLS_METRICS_NAMESPACE": "fleetlink",
        "FLEETLINK_OPERATOR_AUTH": "iam",
    }


@pytest.mark.parametrize("name", constants.FUNCTION_NAMES)
def test_function_uses_the_shared_layer(stacks: FleetlinkStacks, api_template: Template, name: str) -> None:
    # Given the synthesized api stack and its one layer
    layer_id, _ = only_resource(api_template, "AWS::Lambda::LayerVersion")
    # When the function's layers are read
    layers = function_properties(stacks, api_template, name)["Layers"]
    # Then it has the shared layer
    assert layers == [{"Ref": layer_id}]


def test_shared_layer_holds_the_fleetlink_package(api_template: Template, outdir: Path) -> None:
    # Given the synthesized api stack and its layer's staged asset
    _, layer = only_resource(api_template, "AWS::Lambda::LayerVersion")
    staged = outdir / layer["Metadata"]["aws:asset:path"]
    # When the asset's files are listed
    files = {path.relative_to(staged).as_posix() for path in staged.rglob("*") if path.is_file()}
    # Then it is the package laid out for Lambda's python/ directory, byte for byte, without bytecode
    assert {"python/fleetlink/__init__.py", "python/fleetlink/store/table.py"} <= files
    assert (staged / "python/fleetlink/store/table.py").read_bytes() == Path(
        table_definition.__file__
    ).read_bytes()
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]


@pytest.mark.parametrize("name", constants.FUNCTION_NAMES)
def test_function_may_read_and_write_the_table(
    stacks: FleetlinkStacks, data_template: Template, api_template: Template, name: str
) -> None:
    # Given the synthesized stacks and the table's logical id
    table_id, _ = only_resource(data_template, TABLE_TYPE)
    # When the statements of the function role's policy are collected
    table_arn = {"Fn::GetAtt": [table_id, "Arn"]}
    actions_on_table = {
        action
        for statement in role_statements(stacks, api_template, name)
        if any(from_data_stack(stacks, data_template, item) == table_arn for item in resources_of(statement))
        for action in statement["Action"]
    }
    # Then reads and writes on the table are allowed
    assert {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    } <= actions_on_table


@pytest.mark.parametrize("name", constants.FUNCTION_NAMES)
def test_function_may_use_the_table_key(
    stacks: FleetlinkStacks, data_template: Template, api_template: Template, name: str
) -> None:
    # Given the synthesized stacks and the table key's logical id
    key_id, _ = only_resource(data_template, "AWS::KMS::Key")
    # When the statements on that key are collected
    key_arn = {"Fn::GetAtt": [key_id, "Arn"]}
    actions_on_key = {
        action
        for statement in role_statements(stacks, api_template, name)
        if any(from_data_stack(stacks, data_template, item) == key_arn for item in resources_of(statement))
        for action in statement["Action"]
    }
    # Then the function can encrypt and decrypt with it
    assert {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*"} <= actions_on_key


# --- the app ---------------------------------------------------------------------------------


def test_stacks_are_environment_agnostic(stacks: FleetlinkStacks) -> None:
    # Given the app as cdk synth builds it
    # When the stacks' environments are read
    environments = {stacks.data.environment, stacks.api.environment}
    # Then no account or region was looked up or pinned
    assert environments == {"aws://unknown-account/unknown-region"}


def test_stage_defaults_to_dev_in_stack_names(stacks: FleetlinkStacks) -> None:
    # Given the app built with cdk.json's context
    # When the stack names are read
    names = (stacks.data.stack_name, stacks.api.stack_name)
    # Then they carry the dev stage
    assert names == ("fleetlink-dev-data", "fleetlink-dev-api")


def test_stage_comes_from_context() -> None:
    # Given an app synthesized with -c stage=prod
    app = cdk.App(context={"stage": "prod"})
    # When its stage is read
    # Then it is prod
    assert stage_of(app) == "prod"


def test_stage_that_cannot_be_a_stack_name_is_refused() -> None:
    # Given an app synthesized with a stage that does not fit into a stack name
    app = cdk.App(context={"stage": "Prod_1"})
    # When its stage is read
    # Then the app refuses it
    with pytest.raises(ValueError, match="stage"):
        stage_of(app)


def test_missing_function_directory_fails_clearly() -> None:
    # Given a function name with no functions/<name>/handler.py
    # When its code asset is made
    # Then the error names the missing file
    with pytest.raises(FileNotFoundError, match=r"functions/no-such-function/handler\.py"):
        function_code("no-such-function")


# --- helpers -----------------------------------------------------------------------------------


def relative_files(root: Path) -> set[str]:
    """The files under ``root`` as relative POSIX paths, bytecode left out."""
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def resources_of(statement: dict[str, Any]) -> list[Any]:
    """A policy statement's Resource as a list."""
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def role_statements(stacks: FleetlinkStacks, template: Template, name: str) -> list[dict[str, Any]]:
    """The statements of every IAM policy attached to the function's role."""
    role_id = function_properties(stacks, template, name)["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
