"""The data stack: the one table as table.py defines it (also what the dev stack and tests create)."""

from __future__ import annotations

from typing import Any

import pytest
from infra.stacks.data_stack import table_schema

from fleetlink.local.moto_backend import local_dynamodb
from fleetlink.store import table as table_definition
from tests.infra.conftest import Synthesized
from tests.infra.helpers import only_resource

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]

TABLE_TYPE = "AWS::DynamoDB::Table"
EXPECTED = table_definition.create_table_request("any-name")


def table_properties(app: Synthesized) -> dict[str, Any]:
    properties: dict[str, Any] = only_resource(app.data_json, TABLE_TYPE)[1]["Properties"]
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


def shape(request: dict[str, Any]) -> dict[str, Any]:
    """What a table is, whoever describes it: keys, attribute types, indexes."""
    return {
        "keys": key_roles(request["KeySchema"]),
        "attributes": sorted(
            (a["AttributeName"], a["AttributeType"]) for a in request["AttributeDefinitions"]
        ),
        "indexes": indexes_by_name(request.get("GlobalSecondaryIndexes", [])),
    }


@pytest.fixture(scope="module")
def dev_stack_table() -> dict[str, Any]:
    """The table as the dev stack and the integration tests create it (moto), described by DynamoDB."""
    with local_dynamodb("fleetlink-drift") as client:
        described: dict[str, Any] = client.describe_table(TableName="fleetlink-drift")["Table"]
        described["TimeToLive"] = client.describe_time_to_live(TableName="fleetlink-drift")[
            "TimeToLiveDescription"
        ]
        return described


def test_table_is_the_one_table_py_describes(default_app: Synthesized) -> None:
    # Given the synthesized data stack
    # When its table's keys, attributes and indexes are read
    # Then they are exactly those of create_table_request()
    assert shape(table_properties(default_app)) == shape(EXPECTED)


def test_table_is_the_one_the_dev_stack_creates(
    default_app: Synthesized, dev_stack_table: dict[str, Any]
) -> None:
    # Given the table the dev stack and the integration tests create on moto, as DynamoDB describes it
    described = {
        **dev_stack_table,
        "GlobalSecondaryIndexes": [
            {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
            for index in dev_stack_table.get("GlobalSecondaryIndexes", [])
        ],
    }
    # When compared with the table the data stack deploys
    properties = table_properties(default_app)
    # Then keys, attribute types, indexes, TTL and billing are the same: they cannot drift apart
    assert shape(properties) == shape(described)
    assert (
        properties["TimeToLiveSpecification"]["AttributeName"]
        == dev_stack_table["TimeToLive"]["AttributeName"]
    )
    assert dev_stack_table["TimeToLive"]["TimeToLiveStatus"] == "ENABLED"
    assert properties["BillingMode"] == described["BillingModeSummary"]["BillingMode"]


def test_table_is_on_demand_with_ttl_pitr_and_deletion_protection(default_app: Synthesized) -> None:
    # Given the data stack's template
    # Then its one table bills per request (as table.py says), expires items on table.py's TTL
    # attribute, keeps point-in-time recovery and cannot be deleted while protection is on
    default_app.data.resource_count_is(TABLE_TYPE, 1)
    default_app.data.has_resource_properties(
        TABLE_TYPE,
        {
            "BillingMode": EXPECTED["BillingMode"],
            "TimeToLiveSpecification": {"AttributeName": table_definition.TTL_ATTRIBUTE, "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "DeletionProtectionEnabled": True,
        },
    )


def test_table_and_its_key_are_retained(default_app: Synthesized) -> None:
    # Given the data stack's table and key
    retained = [only_resource(default_app.data_json, kind)[1] for kind in (TABLE_TYPE, "AWS::KMS::Key")]
    # Then both outlive a stack deletion or replacement
    for resource in retained:
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_table_is_encrypted_with_its_own_rotating_kms_key(default_app: Synthesized) -> None:
    key_id, key = only_resource(default_app.data_json, "AWS::KMS::Key")
    sse = table_properties(default_app)["SSESpecification"]
    assert sse == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}}
    assert key["Properties"]["EnableKeyRotation"] is True


def test_data_stack_holds_only_the_table_its_key_the_cursor_key_and_the_releases(
    default_app: Synthesized,
) -> None:
    # Given the data stack
    # When its resource types are listed
    kinds = sorted(resource["Type"] for resource in default_app.data_json["Resources"].values())
    # Then it is the stateful part only: replacing the api stack touches none of it
    releases = ["AWS::S3::Bucket", "AWS::S3::Bucket", "AWS::S3::BucketPolicy", "AWS::S3::BucketPolicy"]
    assert kinds == sorted(
        ["AWS::DynamoDB::Table", "AWS::KMS::Key", "AWS::SecretsManager::Secret", *releases]
    )


def test_cursor_key_is_generated_by_secrets_manager_not_written_in_the_template(
    default_app: Synthesized,
) -> None:
    # Given the cursor key secret
    _, secret = only_resource(default_app.data_json, "AWS::SecretsManager::Secret")
    # Then Secrets Manager generates its value (64 characters, long enough for FLEETLINK_CURSOR_KEY)
    assert "SecretString" not in secret["Properties"]
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] >= 32


def test_data_stack_outputs_the_table_name(default_app: Synthesized) -> None:
    table_id, _ = only_resource(default_app.data_json, TABLE_TYPE)
    assert default_app.data_json["Outputs"]["TableName"]["Value"] == {"Ref": table_id}


def test_data_stack_beyond_dev_has_termination_protection(
    default_app: Synthesized, custom_app: Synthesized
) -> None:
    assert default_app.stacks.data.termination_protection is False
    assert custom_app.stacks.data.termination_protection is True


def test_table_translation_refuses_what_it_cannot_build(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a table definition that grew a part the CDK translation does not know
    grown = {**EXPECTED, "StreamSpecification": {"StreamEnabled": True}}
    monkeypatch.setattr(table_definition, "create_table_request", lambda _name: grown)
    # When the CDK schema is derived from it
    # Then synthesis stops instead of silently dropping the part
    with pytest.raises(ValueError, match="StreamSpecification"):
        table_schema()
