"""The dev stack's buckets: every bucket the function registry names, on one moto S3 server on
loopback, each kept in its own folder of the data dir across restarts."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from fleetlink.api.buckets import OUTPUT_BUCKET, RELEASES_BUCKET
from fleetlink.api.functions import buckets
from fleetlink.local.buckets import LocalBuckets, local_bucket_name
from fleetlink.local.moto_backend import FAKE_AWS_ENV


def s3_at(endpoint: str) -> object:
    config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)


def test_every_registry_bucket_is_served_and_kept_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the dev stack's buckets with a data dir (and moto's fake credentials, as the dev stack sets)
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    first = LocalBuckets(buckets().values(), tmp_path)
    env = first.start()
    try:
        # Then the handlers are told each bucket's name and the one endpoint
        assert env[OUTPUT_BUCKET.env] == local_bucket_name(OUTPUT_BUCKET)
        assert env[RELEASES_BUCKET.env] == local_bucket_name(RELEASES_BUCKET)
        assert env["FLEETLINK_S3_ENDPOINT"].startswith("http://127.0.0.1:")
        # When an object lands in the output bucket (an agent's presigned PUT)
        s3 = s3_at(first.endpoint)
        key = "outputs/exe_1/0001/stdout.gz"
        s3.put_object(Bucket=env[OUTPUT_BUCKET.env], Key=key, Body=b"gzip bytes")  # type: ignore[attr-defined]
    finally:
        first.stop()
    # Then it is kept in the output bucket's folder of the data dir
    assert (tmp_path / OUTPUT_BUCKET.name / key).read_bytes() == b"gzip bytes"
    # And a restarted dev stack serves it again
    second = LocalBuckets(buckets().values(), tmp_path)
    env = second.start()
    try:
        got = s3_at(second.endpoint).get_object(Bucket=env[OUTPUT_BUCKET.env], Key=key)  # type: ignore[attr-defined]
        assert got["Body"].read() == b"gzip bytes"
    finally:
        second.stop()
