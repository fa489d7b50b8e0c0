"""The data stack's buckets as the API stack reaches them: each named by stage, account and region
(no cross-stack reference), each function granted exactly what its registry entry declares
(``FunctionSpec.buckets``: actions on one prefix) and told the bucket's name in its environment."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam

from fleetlink.api.permissions import BucketAccess
from infra import nag
from infra.constructs.functions import FleetFunction


def bucket_name(stage: str, name: str) -> str:
    """``fleetlink-<stage>-<name>-<account>-<region>``: the data stack names it, the API stack derives it."""
    return f"fleetlink-{stage}-{name}-{Aws.ACCOUNT_ID}-{Aws.REGION}"


def objects_arn(stage: str, bucket: BucketAccess) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{bucket_name(stage, bucket.name)}/{bucket.prefix}*"


def nag_resource(stage: str, bucket: BucketAccess) -> str:
    """The grant's resource as cdk-nag prints it (pseudo parameters in angle brackets)."""
    name = f"fleetlink-{stage}-{bucket.name}-<AWS::AccountId>-<AWS::Region>"
    return f"arn:<AWS::Partition>:s3:::{name}/{bucket.prefix}*"


def grant_bucket_access(function: FleetFunction, stage: str, bucket: BucketAccess) -> None:
    """The declared actions on the bucket's prefix, and the variable that names the bucket."""
    function.function.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=sorted(bucket.actions), resources=[objects_arn(stage, bucket)])
    )
    function.function.add_environment(bucket.env, bucket_name(stage, bucket.name))
    nag.accept(
        function.role,
        f"AwsSolutions-IAM5[Resource::{nag_resource(stage, bucket)}]",
        f"presigned links to single objects under {bucket.prefix} (their keys are not known in advance)",
    )
