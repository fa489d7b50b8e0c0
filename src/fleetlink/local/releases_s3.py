"""The dev stack's releases bucket: moto's S3 served over loopback (presigned links work from any
process on this machine, as S3's do), its objects kept in the data folder across restarts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

BUCKET = "fleetlink-releases"


class LocalReleasesBucket:
    """A moto S3 server on 127.0.0.1 (any free port) holding the releases bucket."""

    def __init__(self, data_dir: Path | None) -> None:
        #: Where objects are kept (``<key>`` as a path); None: memory only.
        self.data_dir = data_dir
        self.endpoint = ""
        self._server: Any = None
        self._client: Any = None
        self._saved: dict[str, str] = {}

    def start(self) -> dict[str, str]:
        """Serve the bucket, restore its kept objects; the handlers' environment for it."""
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
        self._client.create_bucket(Bucket=BUCKET)
        if self.data_dir is not None and self.data_dir.is_dir():
            for path in sorted(self.data_dir.rglob("*")):
                if path.is_file():
                    key = path.relative_to(self.data_dir).as_posix()
                    answer = self._client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
                    self._saved[key] = answer["ETag"]
        return {"FLEETLINK_RELEASES_BUCKET": BUCKET, "FLEETLINK_RELEASES_S3_ENDPOINT": self.endpoint}

    def save(self) -> int:
        """Write objects new or changed since the last save to the data folder; how many."""
        if self.data_dir is None or self._client is None:
            return 0
        written = 0
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for entry in page.get("Contents", []):
                key, etag = entry["Key"], entry["ETag"]
                if self._saved.get(key) == etag or ".." in key.split("/"):
                    continue
                path = self.data_dir / key
                path.parent.mkdir(parents=True, exist_ok=True)
                temp = path.with_name(f".{path.name}.partial")
                temp.write_bytes(self._client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
                temp.replace(path)
                self._saved[key] = etag
                written += 1
        return written

    def stop(self) -> None:
        try:
            self.save()
        finally:
            if self._server is not None:
                self._server.stop()
                self._server = None
