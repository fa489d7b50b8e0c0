"""The releases bucket in the data stack: private, encrypted, TLS-only, versioned, logged; the
releases function may presign links to its artifacts and nothing else of it."""

from __future__ import annotations

from typing import Any

import pytest

from fleetlink.api.functions import FUNCTIONS
from tests.infra.conftest import Synthesized
from tests.infra.helpers import listed, resources_of_type, role_statements

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]


def _releases_bucket(app: Synthesized) -> dict[str, Any]:
    buckets = resources_of_type(app.data_json, "AWS::S3::Bucket")
    (bucket,) = [b for b in buckets.values() if "VersioningConfiguration" in b["Properties"]]
    return bucket["Properties"]


def test_the_releases_bucket_is_private_encrypted_versioned_and_logged(default_app: Synthesized) -> None:
    properties = _releases_bucket(default_app)
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    encryption = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert "LoggingConfiguration" in properties
    rules = properties["LifecycleConfiguration"]["Rules"]
    assert any("NoncurrentVersionExpiration" in rule for rule in rules)


def test_the_releases_bucket_refuses_plain_http(default_app: Synthesized) -> None:
    policies = resources_of_type(default_app.data_json, "AWS::S3::BucketPolicy").values()
    denies = [
        statement
        for policy in policies
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
    ]
    assert denies
    assert all(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_s3_grants_are_the_registry_buckets_on_their_prefix(default_app: Synthesized, name: str) -> None:
    # Given the function's S3 statements and its registry entry
    statements = [s for s in role_statements(default_app, name) if "s3:" in str(s["Action"])]
    declared = FUNCTIONS[name].buckets
    # Then there is one statement per declared bucket: its actions on its prefix of its bucket only
    assert len(statements) == len(declared)
    for statement, bucket in zip(statements, declared, strict=True):
        assert sorted(listed(statement["Action"])) == sorted(bucket.actions)
        resource = str(statement["Resource"])
        assert f"fleetlink-dev-{bucket.name}-" in resource
        assert f"/{bucket.prefix}*" in resource


def test_the_releases_and_tasks_functions_reach_their_buckets() -> None:
    assert [b.name for b in FUNCTIONS["releases"].buckets] == ["releases"]
    assert [b.name for b in FUNCTIONS["tasks"].buckets] == ["output"]
