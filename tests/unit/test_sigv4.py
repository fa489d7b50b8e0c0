"""SigV4 for operators: requests signed for execute-api with the default credential chain."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from fleetlink.agent.sigv4 import MissingCredentials, SigV4Auth, region_of_host

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # AWS's documented example key
SESSION_TOKEN = "session-token-example"
API = "https://abc123defg.execute-api.eu-west-1.amazonaws.com"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials in the environment, and nothing else botocore could find."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)


def send(auth: httpx.Auth, method: str, url: str, **kwargs: object) -> httpx.Request:
    """Send through a mock transport; the request as it left the client."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        client.request(method, url, **kwargs)  # type: ignore[arg-type]
    return seen[0]


def expected_signature(request: httpx.Request, region: str) -> str:
    """SigV4 computed from the specification, independently of botocore."""
    amz_date = request.headers["x-amz-date"]
    signed = request.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    canonical_headers = "".join(f"{name}:{request.headers[name].strip()}\n" for name in signed)
    query = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in request.url.params.multi_items()
    )
    canonical_request = "\n".join(
        [
            request.method,
            quote(request.url.path, safe="/-_.~"),
            "&".join(f"{k}={v}" for k, v in query),
            canonical_headers,
            ";".join(signed),
            hashlib.sha256(request.content).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/execute-api/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = f"AWS4{SECRET_KEY}".encode()
    for part in (amz_date[:8], region, "execute-api", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_request_is_signed_for_execute_api_with_the_environment_credentials(aws_env: None) -> None:
    # Given credentials in the environment and the API's default endpoint
    # When an operator request goes out through the auth
    request = send(SigV4Auth(), "GET", f"{API}/v1/agents")
    # Then it carries a SigV4 authorization for execute-api in the endpoint's region, and the token
    authorization = request.headers["authorization"]
    date = request.headers["x-amz-date"]
    assert authorization.startswith(
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{date[:8]}/eu-west-1/execute-api/aws4_request, "
    )
    assert "SignedHeaders=host;x-amz-date;x-amz-security-token," in authorization
    assert request.headers["x-amz-security-token"] == SESSION_TOKEN


def test_signature_covers_method_path_query_and_body(aws_env: None) -> None:
    # Given a request with a query string and a JSON body
    body = {"tags": {"role": "web", "zone": "a b"}}
    # When it is signed and sent
    request = send(
        SigV4Auth(), "PUT", f"{API}/v1/agents/agt_01/tags", params={"b": "2", "a": "x y"}, json=body
    )
    # Then the signature is the one the SigV4 specification gives for exactly that request
    assert "content-type" in request.headers["authorization"]
    signature = request.headers["authorization"].rsplit("Signature=", 1)[1]
    assert signature == expected_signature(request, "eu-west-1")
    assert json.loads(request.content) == body
    # And the query goes out as it was signed: RFC 3986 encoding, a space as %20 (never "+")
    assert request.url.query == b"b=2&a=x%20y"


def test_explicit_region_wins_over_the_host(aws_env: None) -> None:
    request = send(SigV4Auth(region="us-east-1"), "GET", f"{API}/v1/health")
    assert "/us-east-1/execute-api/aws4_request" in request.headers["authorization"]


def test_configured_region_signs_a_custom_domain(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a custom domain (no region in the host) and AWS_REGION set
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    # When a request is signed
    request = send(SigV4Auth(), "GET", "https://fleet.example.com/v1/agents")
    # Then the configured region is used
    assert "/ap-southeast-2/execute-api/aws4_request" in request.headers["authorization"]


def test_no_region_anywhere_is_a_clear_error(aws_env: None) -> None:
    with pytest.raises(MissingCredentials, match="region"):
        send(SigV4Auth(), "GET", "https://fleet.example.com/v1/agents")


def test_no_credentials_is_a_clear_error(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no credentials anywhere in the default chain
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    # When a request is signed
    # Then the error says how to provide them
    with pytest.raises(MissingCredentials, match="AWS_PROFILE"):
        send(SigV4Auth(), "GET", f"{API}/v1/agents")


def test_long_lived_keys_sign_without_a_token(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    request = send(SigV4Auth(), "GET", f"{API}/v1/agents")
    assert "x-amz-security-token" not in request.headers
    assert "SignedHeaders=host;x-amz-date," in request.headers["authorization"]


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("abc123.execute-api.us-east-1.amazonaws.com", "us-east-1"),
        ("abc123.execute-api.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        ("fleet.example.com", None),
        ("abc123.execute-api.us-east-1.amazonaws.com.evil.example", None),
    ],
)
def test_region_is_read_from_default_endpoints_only(host: str, region: str | None) -> None:
    assert region_of_host(host) == region


def test_operator_cli_signs_with_sigv4_when_no_operator_token_is_given() -> None:
    # Given no operator token
    from fleetlink.cli.operator import operator_client as _operator

    # When the CLI builds its operator client / Then requests are signed with SigV4 instead of a bearer
    client = _operator("https://abc123.execute-api.eu-west-1.amazonaws.com", None)
    assert isinstance(client._http.auth, SigV4Auth)
    assert "Authorization" not in client._http.headers
