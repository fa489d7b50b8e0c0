"""The API's S3 buckets (releases, task output): presigned links to one object each; the API never
streams an object itself."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fleetlink.core.errors import Unavailable


class PresignedBucket:
    """Presigned PUT/GET (SigV4) of single objects, and HEAD to check an upload landed."""

    def __init__(
        self, bucket: str | None, region: str | None, endpoint: str | None = None, *, name: str, env: str
    ) -> None:
        #: What the bucket holds and the variable that names it (said when it is not configured).
        self._name, self._env = name, env
        self._bucket = bucket
        self._region = region
        self._endpoint = endpoint
        self._client_cache: list[Any] = []

    def _client(self) -> Any:
        if not self._bucket:
            raise Unavailable(f"no {self._name} bucket is configured ({self._env})", retry_after_s=60)
        if not self._client_cache:
            import boto3
            from botocore.config import Config

            config = Config(
                signature_version="s3v4", s3={"addressing_style": "path" if self._endpoint else "auto"}
            )
            self._client_cache.append(
                boto3.client("s3", region_name=self._region, endpoint_url=self._endpoint, config=config)
            )
        return self._client_cache[0]

    def upload_url(self, object_key: str, size: int, expires_s: int) -> tuple[str, dict[str, str]]:
        params = {
            "Bucket": self._bucket,
            "Key": object_key,
            "ContentLength": size,
            "ContentType": "application/gzip",
        }
        url = self._client().generate_presigned_url("put_object", Params=params, ExpiresIn=expires_s)
        return str(url), {"Content-Type": "application/gzip", "Content-Length": str(size)}

    def download_url(self, object_key: str, expires_s: int) -> str:
        params = {"Bucket": self._bucket, "Key": object_key}
        return str(self._client().generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s))

    def object_size(self, object_key: str) -> int | None:
        try:
            head = self._client().head_object(Bucket=self._bucket, Key=object_key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise Unavailable(f"the {self._name} bucket does not answer; retry shortly") from None
        except BotoCoreError:
            raise Unavailable(f"the {self._name} bucket cannot be reached; retry shortly") from None
        return int(head["ContentLength"])
