"""SigV4 for operators: a deployed API authorizes operator routes with IAM (needs the ``agent`` extra).

``OperatorClient(url, auth=SigV4Auth())`` signs every request with the caller's AWS credentials,
found the way the AWS CLI finds them (environment, ``AWS_PROFILE`` / shared files, SSO, container
or instance roles), for the ``execute-api`` service in the API's region.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator
from typing import Any
from urllib.parse import quote

import httpx

SERVICE = "execute-api"
#: ``<api id>.execute-api.<region>.amazonaws.com`` (and the China partition's ``.com.cn``).
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
#: The only request headers signed besides host and the x-amz-* ones: nothing a proxy or httpx rewrites.
_SIGNED_HEADERS = ("content-type",)
#: RFC 3986 unreserved characters, the only ones SigV4 leaves unencoded.
_UNRESERVED = "-_.~"


class MissingCredentials(RuntimeError):
    """No AWS credentials could be found to sign with."""


def region_of_host(host: str) -> str | None:
    """The region in an API Gateway default endpoint's host name, if it is one."""
    match = _EXECUTE_API_HOST.match(host.lower())
    return match.group(1) if match else None


class SigV4Auth(httpx.Auth):
    """Sign each request with AWS Signature Version 4 (botocore's signer) for API Gateway.

    The region is, in order: ``region``, the one in an ``execute-api`` host name, the session's
    configured region (``AWS_DEFAULT_REGION`` or the profile's, then ``AWS_REGION``). Credentials are resolved
    once and refreshed by botocore when they are temporary; the signature covers the method, path,
    query, body and the signed headers.
    """

    requires_request_body = True

    def __init__(self, region: str | None = None, *, session: Any = None, service: str = SERVICE) -> None:
        import botocore.session  # the operator side only: agents never load botocore for this

        self._session = session if session is not None else botocore.session.Session()
        self._region = region
        self._service = service
        self._credentials: Any = None

    def _frozen_credentials(self) -> Any:
        if self._credentials is None:
            self._credentials = self._session.get_credentials()
        if self._credentials is None:
            raise MissingCredentials(
                "no AWS credentials to sign operator requests with: set AWS_PROFILE, run `aws sso login`, "
                "or export AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
            )
        return self._credentials.get_frozen_credentials()

    def region_for(self, url: httpx.URL) -> str:
        region = (
            self._region
            or region_of_host(url.host)
            or self._session.get_config_variable("region")  # AWS_DEFAULT_REGION, the profile
            or os.environ.get("AWS_REGION")
        )
        if not region:
            raise MissingCredentials(
                f"no AWS region to sign for {url.host}: pass one, or set AWS_REGION / AWS_DEFAULT_REGION"
            )
        return str(region)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add ``Authorization``, ``X-Amz-Date`` (and ``X-Amz-Security-Token``), then send."""
        from botocore.auth import SigV4Auth as BotocoreSigV4Auth
        from botocore.awsrequest import AWSRequest

        # SigV4 wants the query RFC 3986-encoded (a space is %20, not httpx's "+", which API Gateway
        # would read as a literal plus): send it exactly as it is signed.
        query = "&".join(
            f"{quote(key, safe=_UNRESERVED)}={quote(value, safe=_UNRESERVED)}"
            for key, value in request.url.params.multi_items()
        )
        request.url = request.url.copy_with(query=query.encode() or None)
        headers = {name: request.headers[name] for name in _SIGNED_HEADERS if name in request.headers}
        aws_request = AWSRequest(
            method=request.method, url=str(request.url), data=request.content, headers=headers
        )
        signer = BotocoreSigV4Auth(self._frozen_credentials(), self._service, self.region_for(request.url))
        signer.add_auth(aws_request)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in aws_request.headers:
                request.headers[name] = aws_request.headers[name]
        yield request
