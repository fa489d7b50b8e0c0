"""The releases bucket: signed agent artifacts, reached only through presigned links the releases
function hands out (one object each, minutes long). Private, encrypted, TLS-only, versioned (a
replaced object stays recoverable), with its access log in a bucket of its own."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3

from constructs import Construct
from fleetlink.api.buckets import RELEASES_BUCKET
from infra import nag
from infra.constructs.buckets import bucket_name

#: A replaced or deleted artifact stays recoverable this long.
NONCURRENT_DAYS = 90


def releases_bucket_name(stage: str) -> str:
    """Named by stage, account and region: the API stack derives the same name (no cross-stack
    reference, and a grant cdk-nag can be told about exactly)."""
    return bucket_name(stage, RELEASES_BUCKET.name)


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
