"""Stateful stack: the one DynamoDB table (built from ``fleetlink.store.table``), its KMS key, and the
secret every function authenticates list cursors with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager

from constructs import Construct
from fleetlink.api.buckets import OUTPUT_BUCKET
from fleetlink.api.settings import Settings
from fleetlink.store import table as table_definition
from infra import constants, nag
from infra.constructs.buckets import bucket_name
from infra.constructs.releases_bucket import ReleasesBucket

_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}
_PROJECTIONS = {
    "ALL": dynamodb.ProjectionType.ALL,
    "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY,
    "INCLUDE": dynamodb.ProjectionType.INCLUDE,
}
#: Complete task output is kept as long as the task (its retention) plus the longest task timeout.
OUTPUT_EXPIRY_DAYS = Settings.retention_days + 1

#: The parts of ``create_table_request()`` this module translates; anything else fails the synth.
_TRANSLATED = {"TableName", "BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes"}


@dataclass(frozen=True)
class TableSchema:
    """The table's keys and indexes as CDK props, derived from ``create_table_request()``."""

    partition_key: dynamodb.Attribute
    sort_key: dynamodb.Attribute | None
    indexes: tuple[dynamodb.GlobalSecondaryIndexProps, ...]
    ttl_attribute: str


def _keys(
    key_schema: list[dict[str, str]], types: dict[str, str]
) -> tuple[dynamodb.Attribute, dynamodb.Attribute | None]:
    """The (partition, sort) attributes of a ``KeySchema`` list."""
    by_role = {
        key["KeyType"]: dynamodb.Attribute(
            name=key["AttributeName"], type=_ATTRIBUTE_TYPES[types[key["AttributeName"]]]
        )
        for key in key_schema
    }
    return by_role["HASH"], by_role.get("RANGE")


def _index(index: dict[str, Any], types: dict[str, str]) -> dynamodb.GlobalSecondaryIndexProps:
    """One ``GlobalSecondaryIndexes`` entry as CDK props."""
    partition_key, sort_key = _keys(index["KeySchema"], types)
    projection = index["Projection"]
    return dynamodb.GlobalSecondaryIndexProps(
        index_name=index["IndexName"],
        partition_key=partition_key,
        sort_key=sort_key,
        projection_type=_PROJECTIONS[projection["ProjectionType"]],
        non_key_attributes=projection.get("NonKeyAttributes"),
    )


def table_schema() -> TableSchema:
    """Translate the shared table definition into CDK props, refusing anything it cannot translate."""
    request = table_definition.create_table_request(table_definition.DEFAULT_TABLE_NAME)
    unknown = set(request) - _TRANSLATED
    if unknown:
        raise ValueError(
            f"create_table_request() has parts the CDK data stack does not build: {sorted(unknown)}"
        )
    if request["BillingMode"] != "PAY_PER_REQUEST":
        raise ValueError(f"the data stack builds on-demand tables only, not {request['BillingMode']!r}")
    types = {item["AttributeName"]: item["AttributeType"] for item in request["AttributeDefinitions"]}
    partition_key, sort_key = _keys(request["KeySchema"], types)
    return TableSchema(
        partition_key=partition_key,
        sort_key=sort_key,
        indexes=tuple(_index(index, types) for index in request.get("GlobalSecondaryIndexes", [])),
        ttl_attribute=table_definition.TTL_ATTRIBUTE,
    )


class DataStack(Stack):
    """The table (on-demand, PITR, deletion protection, retained) encrypted with its own CMK, and the
    cursor key secret (``FLEETLINK_CURSOR_KEY_SECRET_ARN`` of every function)."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: str, **kwargs: Any) -> None:
        # Beyond dev, CloudFormation refuses to delete this stack at all (the table and key are retained
        # on deletion anyway, and the table has deletion protection).
        kwargs.setdefault("termination_protection", stage != constants.DEFAULT_STAGE)
        super().__init__(scope, construct_id, description=f"fleetlink {stage}: data (stateful)", **kwargs)
        schema = table_schema()

        self.key = kms.Key(
            self,
            "TableKey",
            description=f"fleetlink {stage}: encrypts the DynamoDB table",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # No physical name: CloudFormation picks one, the functions get it as TABLE_NAME.
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=schema.partition_key,
            sort_key=schema.sort_key,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=schema.ttl_attribute,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for index in schema.indexes:
            self.table.add_global_secondary_index(
                index_name=index.index_name,
                partition_key=index.partition_key,
                sort_key=index.sort_key,
                projection_type=index.projection_type,
                non_key_attributes=index.non_key_attributes,
            )

        # The HMAC key of list cursors: generated here, never in the template; functions read it at run time.
        self.cursor_key = secretsmanager.Secret(
            self,
            "CursorKey",
            description=f"fleetlink {stage}: authenticates the API's list cursors (HMAC key)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
        )
        nag.accept(
            self.cursor_key,
            "AwsSolutions-SMG4",
            "the key only authenticates short-lived page cursors: it is rotated by replacing its value "
            "(outstanding cursors then answer 400 and the caller lists again), no rotation function needed",
        )

        # Signed agent artifacts (fleetlink release publish), read by nodes through presigned links.
        self.releases = ReleasesBucket(self, "Releases", stage=stage)
        CfnOutput(
            self, "ReleasesBucketName", value=self.releases.bucket.bucket_name, description="agent releases"
        )

        # Complete task output (stdout and stderr, compressed), written and read only through
        # presigned URLs scoped to one object; expires with the tasks it belongs to.
        self.output_bucket = s3.Bucket(
            self,
            "OutputBucket",
            bucket_name=bucket_name(stage, OUTPUT_BUCKET.name),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.releases.access_logs,
            server_access_logs_prefix="outputs/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-with-tasks",
                    expiration=Duration.days(OUTPUT_EXPIRY_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        CfnOutput(self, "OutputBucketName", value=self.output_bucket.bucket_name, description="task output")

        CfnOutput(self, "TableName", value=self.table.table_name, description="the fleetlink table")
        CfnOutput(self, "TableKeyArn", value=self.key.key_arn, description="the table's KMS key")
