"""The releases bucket in the data stack: private, encrypted, TLS-only, versioned, logged; the
releases function may presign links to its artifacts and nothing else of it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import Synthesized
from tests.infra.helpers import resources_of_type, role_statements

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


def test_only_the_releases_function_may_presign_and_only_under_releases(default_app: Synthesized) -> None:
    statements = [s for s in role_statements(default_app, "releases") if "s3:PutObject" in str(s["Action"])]
    (statement,) = statements
    assert sorted(statement["Action"]) == ["s3:GetObject", "s3:PutObject"]
    assert str(statement["Resource"]).endswith("/releases/*']}") or "/releases/*" in str(
        statement["Resource"]
    )
    for other in ("registration", "heartbeat", "tasks", "tunnels", "operator", "relay", "cleanup"):
        assert "s3:" not in str(role_statements(default_app, other))
