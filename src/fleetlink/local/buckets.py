"""The dev stack's S3 buckets (releases, task output: every bucket the function registry names):
one moto S3 server on loopback (presigned links work from any process on this machine, as S3's
do), each bucket's objects kept in its folder of the data dir across restarts."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fleetlink.api.permissions import BucketAccess


def local_bucket_name(bucket: BucketAccess) -> str:
    return f"fleetlink-{bucket.name}"


class LocalBuckets:
    """A moto S3 server on 127.0.0.1 (any free port) holding the registry's buckets."""

    def __init__(self, buckets: Iterable[BucketAccess], data_dir: Path | None) -> None:
        self.buckets = list(buckets)
        #: Where objects are kept (``<bucket name>/<key>`` as a path); None: memory only.
        self.data_dir = data_dir
        self.endpoint = ""
        self._server: Any = None
        self._client: Any = None
        self._saved: dict[tuple[str, str], str] = {}

    def _folder(self, bucket: BucketAccess) -> Path | None:
        return None if self.data_dir is None else self.data_dir / bucket.name

    def start(self) -> dict[str, str]:
        """Serve the buckets, restore their kept objects; the handlers' environment for them."""
        import boto3
        from botocore.config import Config
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
        self._client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", config=config)
        env = {"FLEETLINK_S3_ENDPOINT": self.endpoint}
        for bucket in self.buckets:
            name = local_bucket_name(bucket)
            self._client.create_bucket(Bucket=name)
            env[bucket.env] = name
            folder = self._folder(bucket)
            if folder is None or not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not path.name.endswith(".partial"):
                    key = path.relative_to(folder).as_posix()
                    answer = self._client.put_object(Bucket=name, Key=key, Body=path.read_bytes())
                    self._saved[(name, key)] = answer["ETag"]
        return env

    def save(self) -> int:
        """Write objects new or changed since the last save to the data folder; how many."""
        if self.data_dir is None or self._client is None:
            return 0
        written = 0
        for bucket in self.buckets:
            name, folder = local_bucket_name(bucket), self._folder(bucket)
            assert folder is not None
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=name):
                for entry in page.get("Contents", []):
                    key, etag = entry["Key"], entry["ETag"]
                    if self._saved.get((name, key)) == etag or ".." in key.split("/"):
                        continue
                    path = folder / key
                    path.parent.mkdir(parents=True, exist_ok=True)
                    temp = path.with_name(f".{path.name}.partial")
                    temp.write_bytes(self._client.get_object(Bucket=name, Key=key)["Body"].read())
                    temp.replace(path)
                    self._saved[(name, key)] = etag
                    written += 1
        return written

    def stop(self) -> None:
        try:
            self.save()
        finally:
            if self._server is not None:
                self._server.stop()
                self._server = None
