"""The releases bucket: signed agent artifacts, reached only through presigned links the releases
function hands out (one object each, minutes long). Private, encrypted, TLS-only, versioned (a
replaced object stays recoverable), with its access log in a bucket of its own."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from constructs import Construct
from infra import nag

#: The only prefix the API reads and writes: ``releases/<version>/<artifact>``.
RELEASES_PREFIX = "releases/"
#: A replaced or deleted artifact stays recoverable this long.
NONCURRENT_DAYS = 90


def releases_bucket_name(stage: str) -> str:
    """Named by stage, account and region: the API stack derives the same name (no cross-stack
    reference, and a grant cdk-nag can be told about exactly)."""
    return f"fleetlink-{stage}-releases-{Aws.ACCOUNT_ID}-{Aws.REGION}"


def releases_objects_arn(stage: str) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{releases_bucket_name(stage)}/{RELEASES_PREFIX}*"


def releases_nag_resource(stage: str) -> str:
    """The grant's resource as cdk-nag prints it (pseudo parameters in angle brackets)."""
    bucket = f"fleetlink-{stage}-releases-<AWS::AccountId>-<AWS::Region>"
    return f"arn:<AWS::Partition>:s3:::{bucket}/{RELEASES_PREFIX}*"


class ReleasesBucket(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, stage: str) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        nag.accept(
            self.access_logs,
            "AwsSolutions-S1",
            "this is the access log bucket of the releases bucket: logging it would log itself",
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=releases_bucket_name(stage),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="releases/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(NONCURRENT_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )


def grant_presigning(grantee: iam.IGrantable, stage: str) -> None:
    """What presigned PUT/GET links (and the publish check, a HEAD) need: objects under releases/."""
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=["s3:GetObject", "s3:PutObject"], resources=[releases_objects_arn(stage)])
    )
