"""RFC 9421 request signatures: fleetlink's signer and verifier, and interop with standard clients."""

from __future__ import annotations

import base64
import datetime
import hashlib
import time
from collections.abc import Sequence
from types import SimpleNamespace

import httpx
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver
from requests_http_signature import HTTPSignatureAuth, algorithms

from fleetlink.auth.httpx_auth import HttpxSignatureAuth
from fleetlink.auth.keys import (
    PrivateKey,
    generate_private_key,
    load_private_key,
    load_public_key,
    private_key_to_pem,
    public_key_pem,
)
from fleetlink.auth.signatures import (
    IncomingRequest,
    SignatureParams,
    read_signature_params,
    sign_request,
    verify_request,
)
from fleetlink.core.entities import KeyAlg
from fleetlink.core.errors import InvalidInput, Unauthenticated

NOW = 1_800_000_000
URL = "https://api.fleetlink.example/v1/agents/agt_1/heartbeat?full=1"
BODY = b'{"load": 0.25}'
KEY_ID = "agt_1"
ED25519_KEY = generate_private_key(KeyAlg.ED25519)
LIBRARY_ALGORITHMS = {KeyAlg.ED25519: algorithms.ED25519, KeyAlg.RSA_PSS_SHA512: algorithms.RSA_PSS_SHA512}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    key = generate_private_key(KeyAlg.RSA_PSS_SHA512, rsa_bits=2048)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def signed_request(
    *,
    method: str = "POST",
    url: str = URL,
    body: bytes = BODY,
    key: PrivateKey = ED25519_KEY,
    alg: KeyAlg = KeyAlg.ED25519,
    created: int = NOW,
) -> IncomingRequest:
    headers = {"Content-Type": "application/json"}
    headers |= sign_request(
        method, url, headers, body, private_key=key, key_id=KEY_ID, key_alg=alg, created=created, nonce="n-1"
    )
    return IncomingRequest(method=method, target_uri=url, headers=headers, body=body)


def library_signed_request(
    components: Sequence[str],
    *,
    headers: dict[str, str] | None = None,
    body: bytes = BODY,
    nonce: str | None = "n-1",
    expires: int | None = None,
    url: str = URL,
) -> IncomingRequest:
    """Sign with the bare library, to produce signatures fleetlink's signer would not."""
    message = SimpleNamespace(method="POST", url=url, headers=dict(headers or {}))
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={KEY_ID: ED25519_KEY}),
    )
    signer.sign(
        message,
        key_id=KEY_ID,
        created=_datetime(NOW),
        expires=None if expires is None else _datetime(expires),
        nonce=nonce,
        covered_component_ids=components,
        use_existing_digest="Content-Digest" in message.headers,
    )
    return IncomingRequest(method="POST", target_uri=url, headers=message.headers, body=body)


def _datetime(epoch_s: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)


def verify_ed25519(request: IncomingRequest, *, now_s: int = NOW) -> SignatureParams:
    return verify_request(request, ED25519_KEY.public_key(), KeyAlg.ED25519, now_s=now_s)


def rejection_code(request: IncomingRequest, *, now_s: int = NOW) -> str:
    with pytest.raises(Unauthenticated) as caught:
        verify_ed25519(request, now_s=now_s)
    return caught.value.code


def digest_header(body: bytes, algorithm: str = "sha-256") -> str:
    digest = hashlib.new(algorithm.replace("-", ""), body).digest()
    return f"{algorithm}=:{base64.b64encode(digest).decode()}:"


def with_headers(request: IncomingRequest, **changes: str) -> IncomingRequest:
    headers = dict(request.headers) | {name.replace("_", "-"): value for name, value in changes.items()}
    return IncomingRequest(request.method, request.target_uri, headers, request.body)


# Round trips


def test_ed25519_round_trip_verifies_and_returns_the_params() -> None:
    """Given a request signed with an Ed25519 key, when verified, then its signed params come back."""
    params = verify_ed25519(signed_request())

    assert params == SignatureParams(key_id=KEY_ID, nonce="n-1", created=NOW, alg="ed25519")


def test_rsa_pss_sha512_round_trip_verifies(rsa_key: rsa.RSAPrivateKey) -> None:
    """Given a request signed with an RSA-PSS key, when verified with its public key, then it passes."""
    request = signed_request(key=rsa_key, alg=KeyAlg.RSA_PSS_SHA512)

    params = verify_request(request, rsa_key.public_key(), KeyAlg.RSA_PSS_SHA512, now_s=NOW)

    assert params.alg == "rsa-pss-sha512"


def test_bodiless_request_verifies_without_content_digest() -> None:
    """Given a GET without a body, when signed, then no Content-Digest is sent and it verifies."""
    request = signed_request(method="GET", body=b"")

    assert "content-digest" not in request.headers
    assert verify_ed25519(request).key_id == KEY_ID


def test_header_names_are_case_insensitive() -> None:
    """Given signature headers in upper case, when verified, then they are found."""
    request = signed_request()
    shouting = {name.upper(): value for name, value in request.headers.items()}

    assert verify_ed25519(IncomingRequest(request.method, request.target_uri, shouting, request.body))


def test_read_signature_params_reads_without_verifying() -> None:
    """Given a request with wrong signature bytes, when its params are read, then keyid is still returned."""
    request = with_headers(signed_request(), signature="pyhms=:AAAA:")

    assert read_signature_params(request).key_id == KEY_ID


# Interop with requests-http-signature


@pytest.mark.parametrize("alg", [KeyAlg.ED25519, KeyAlg.RSA_PSS_SHA512])
def test_request_signed_by_requests_http_signature_verifies(alg: KeyAlg, rsa_key: rsa.RSAPrivateKey) -> None:
    """Given a request signed by the requests-http-signature package, when verified, then it passes."""
    key = ED25519_KEY if alg is KeyAlg.ED25519 else rsa_key
    auth = HTTPSignatureAuth(
        signature_algorithm=LIBRARY_ALGORITHMS[alg],
        key_id=KEY_ID,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={KEY_ID: key}),
        use_nonce=True,
    )
    prepared = auth(requests.Request("POST", URL, json={"load": 0.25}).prepare())
    assert prepared.method is not None
    assert prepared.url is not None
    assert isinstance(prepared.body, bytes)
    request = IncomingRequest(prepared.method, prepared.url, dict(prepared.headers), prepared.body)

    params = verify_request(request, key.public_key(), alg, now_s=int(time.time()))

    assert params.key_id == KEY_ID
    assert params.alg == alg.value


# Tampering


def test_tampered_body_is_rejected() -> None:
    """Given a signed request, when its body is swapped, then the digest no longer matches."""
    request = signed_request()
    tampered = IncomingRequest(request.method, request.target_uri, request.headers, b'{"load": 0.99}')

    assert rejection_code(tampered) == "content-digest-mismatch"


def test_tampered_path_is_rejected() -> None:
    """Given a signed request, when its path is changed, then the signature fails."""
    request = signed_request()
    tampered = IncomingRequest(request.method, URL.replace("agt_1", "agt_2"), request.headers, request.body)

    assert rejection_code(tampered) == "signature-invalid"


def test_tampered_method_is_rejected() -> None:
    """Given a signed POST, when replayed as a PUT, then the signature fails."""
    request = signed_request()
    tampered = IncomingRequest("PUT", request.target_uri, request.headers, request.body)

    assert rejection_code(tampered) == "signature-invalid"


def test_signature_by_another_key_is_rejected() -> None:
    """Given a request signed by another Ed25519 key, when verified with the agent's key, then it fails."""
    request = signed_request(key=generate_private_key(KeyAlg.ED25519))

    assert rejection_code(request) == "signature-invalid"


def test_signature_naming_another_keyid_than_the_looked_up_one_is_rejected() -> None:
    """Given a request whose keyid is rewritten, when verified, then the signature no longer verifies."""
    request = signed_request()
    rewritten = request.headers["signature-input"].replace('keyid="agt_1"', 'keyid="agt_2"')

    assert rejection_code(with_headers(request, signature_input=rewritten)) == "signature-invalid"


def test_failure_details_do_not_echo_the_signature() -> None:
    """Given a forged signature, when rejected, then the detail does not carry the signature bytes."""
    request = signed_request(key=generate_private_key(KeyAlg.ED25519))
    signature_b64 = request.headers["signature"].split(":")[1]

    with pytest.raises(Unauthenticated) as caught:
        verify_ed25519(request)

    assert signature_b64 not in caught.value.detail


# Covered components and Content-Digest


def test_body_without_content_digest_coverage_is_rejected() -> None:
    """Given a body signed over @method and @target-uri only, when verified, then coverage is missing."""
    request = library_signed_request(["@method", "@target-uri"])

    assert rejection_code(request) == "signature-components-missing"


def test_signed_content_digest_not_matching_the_body_is_rejected() -> None:
    """Given a signed Content-Digest of another body, when verified, then the digest mismatches."""
    request = library_signed_request(
        ["@method", "@target-uri", "content-digest"], headers={"Content-Digest": digest_header(b"other")}
    )

    assert rejection_code(request) == "content-digest-mismatch"


def test_sha512_content_digest_is_accepted() -> None:
    """Given a signed sha-512 Content-Digest of the body, when verified, then it passes."""
    request = library_signed_request(
        ["@method", "@target-uri", "content-digest"],
        headers={"Content-Digest": digest_header(BODY, "sha-512")},
    )

    assert verify_ed25519(request).key_id == KEY_ID


def test_path_with_authority_instead_of_target_uri_is_accepted() -> None:
    """Given a request without a query signed over @path and @authority, when verified, then it passes."""
    request = library_signed_request(
        ["@method", "@path", "@authority", "content-digest"],
        headers={"Content-Digest": digest_header(BODY)},
        url=URL.split("?")[0],
    )

    assert verify_ed25519(request).key_id == KEY_ID


def test_query_string_outside_the_covered_components_is_rejected() -> None:
    """Given a request with a query string signed over @path and @authority only, then coverage is missing."""
    request = library_signed_request(
        ["@method", "@path", "@authority", "content-digest"], headers={"Content-Digest": digest_header(BODY)}
    )

    assert rejection_code(request) == "signature-components-missing"


def test_query_string_covered_by_query_component_is_accepted() -> None:
    """Given a request with a query string signed over @path, @authority and @query, then it passes."""
    request = library_signed_request(
        ["@method", "@path", "@query", "@authority", "content-digest"],
        headers={"Content-Digest": digest_header(BODY)},
    )

    assert verify_ed25519(request).key_id == KEY_ID


def test_neither_target_uri_nor_path_with_authority_is_rejected() -> None:
    """Given a signature over @method and @path only, when verified, then coverage is missing."""
    request = library_signed_request(
        ["@method", "@path", "content-digest"], headers={"Content-Digest": digest_header(BODY)}
    )

    assert rejection_code(request) == "signature-components-missing"


def test_missing_method_coverage_is_rejected() -> None:
    """Given a signature that does not cover @method, when verified, then coverage is missing."""
    request = library_signed_request(
        ["@target-uri", "content-digest"], headers={"Content-Digest": digest_header(BODY)}
    )

    assert rejection_code(request) == "signature-components-missing"


# Time


@pytest.mark.parametrize("offset_s", [-301, 301])
def test_created_more_than_300_s_off_is_rejected(offset_s: int) -> None:
    """Given a signature created 301 s before or after server time, when verified, then it is stale."""
    request = signed_request(created=NOW + offset_s)

    assert rejection_code(request) == "signature-expired"


@pytest.mark.parametrize("offset_s", [-299, 299])
def test_created_less_than_300_s_off_is_accepted(offset_s: int) -> None:
    """Given a signature created 299 s before or after server time, when verified, then it passes."""
    request = signed_request(created=NOW + offset_s)

    assert verify_ed25519(request).created == NOW + offset_s


def test_expires_in_the_past_is_rejected() -> None:
    """Given a fresh signature whose expires is already past, when verified, then it is expired."""
    request = library_signed_request(
        ["@method", "@target-uri", "content-digest"],
        headers={"Content-Digest": digest_header(BODY)},
        expires=NOW - 1,
    )

    assert rejection_code(request) == "signature-expired"


# Malformed or missing signatures


def test_missing_signature_headers_are_rejected() -> None:
    """Given a request without Signature-Input and Signature, when verified, then the signature is missing."""
    request = IncomingRequest("GET", URL, {"Accept": "application/json"}, b"")

    assert rejection_code(request) == "signature-missing"


def test_garbage_signature_input_is_rejected() -> None:
    """Given an unparsable Signature-Input, when verified, then the signature is malformed."""
    request = with_headers(signed_request(), signature_input="this is ((not a dictionary")

    assert rejection_code(request) == "signature-malformed"


def test_two_signatures_are_rejected() -> None:
    """Given two signatures on one request, when verified, then it is malformed."""
    request = signed_request()
    first_input, first_signature = request.headers["signature-input"], request.headers["signature"]
    doubled = with_headers(
        request,
        signature_input=f"{first_input}, {first_input.replace('pyhms=', 'other=')}",
        signature=f"{first_signature}, {first_signature.replace('pyhms=', 'other=')}",
    )

    assert rejection_code(doubled) == "signature-malformed"


def test_signature_without_nonce_is_rejected() -> None:
    """Given a signature with no nonce, when its params are read, then it is malformed."""
    request = library_signed_request(
        ["@method", "@target-uri", "content-digest"],
        headers={"Content-Digest": digest_header(BODY)},
        nonce=None,
    )

    with pytest.raises(Unauthenticated) as caught:
        read_signature_params(request)

    assert caught.value.code == "signature-malformed"


def test_token_keyid_is_rejected() -> None:
    """Given a keyid sent as a token rather than a string, when its params are read, then it is malformed."""
    request = signed_request()
    token_keyid = request.headers["signature-input"].replace('keyid="agt_1"', "keyid=agt_1")

    with pytest.raises(Unauthenticated) as caught:
        read_signature_params(with_headers(request, signature_input=token_keyid))

    assert caught.value.code == "signature-malformed"


def test_alg_mismatch_is_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    """Given an ed25519 signature, when verified against an rsa-pss-sha512 key, then the alg mismatches."""
    request = signed_request()

    with pytest.raises(Unauthenticated) as caught:
        verify_request(request, rsa_key.public_key(), KeyAlg.RSA_PSS_SHA512, now_s=NOW)

    assert caught.value.code == "signature-alg-mismatch"


# httpx client


def test_httpx_auth_signs_requests_that_verify() -> None:
    """Given an httpx client with HttpxSignatureAuth, when it posts, then the sent request verifies."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    auth = HttpxSignatureAuth(ED25519_KEY, KEY_ID, KeyAlg.ED25519)
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        client.post(URL, content=BODY, headers={"Content-Type": "application/json"})
    (request,) = sent
    incoming = IncomingRequest(request.method, str(request.url), dict(request.headers), request.read())

    assert verify_request(incoming, ED25519_KEY.public_key(), KeyAlg.ED25519, now_s=int(time.time()))


# Keys


def test_load_public_key_round_trips_pem(rsa_key: rsa.RSAPrivateKey) -> None:
    """Given a key pair's public PEM, when loaded for its alg, then the same public key comes back."""
    loaded = load_public_key(public_key_pem(rsa_key), KeyAlg.RSA_PSS_SHA512)

    assert isinstance(loaded, rsa.RSAPublicKey)
    assert loaded.public_numbers() == rsa_key.public_key().public_numbers()


def test_load_private_key_round_trips_pem() -> None:
    """Given a private key's PEM, when loaded, then it signs for the same public key."""
    loaded = load_private_key(private_key_to_pem(ED25519_KEY))

    assert public_key_pem(loaded) == public_key_pem(ED25519_KEY)


def test_load_public_key_rejects_garbage() -> None:
    """Given text that is not PEM, when loaded, then it is invalid input."""
    with pytest.raises(InvalidInput) as caught:
        load_public_key("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n", KeyAlg.ED25519)

    assert caught.value.code == "invalid-public-key"


@pytest.mark.parametrize("alg", [KeyAlg.ED25519, KeyAlg.RSA_PSS_SHA512])
def test_load_public_key_rejects_a_key_of_the_wrong_type(alg: KeyAlg, rsa_key: rsa.RSAPrivateKey) -> None:
    """Given a key of the other algorithm, when loaded for alg, then it is invalid input."""
    other = rsa_key if alg is KeyAlg.ED25519 else ED25519_KEY

    with pytest.raises(InvalidInput) as caught:
        load_public_key(public_key_pem(other), alg)

    assert caught.value.code == "invalid-public-key"


def test_load_public_key_rejects_an_ec_key() -> None:
    """Given a P-256 public key, when loaded for ed25519, then it is invalid input."""
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )

    with pytest.raises(InvalidInput):
        load_public_key(pem, KeyAlg.ED25519)


def test_load_public_key_rejects_rsa_under_2048_bits() -> None:
    """Given a 1024-bit RSA public key, when loaded for rsa-pss-sha512, then it is invalid input."""
    pem = public_key_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505 - deliberately weak

    with pytest.raises(InvalidInput) as caught:
        load_public_key(pem, KeyAlg.RSA_PSS_SHA512)

    assert caught.value.code == "invalid-public-key"
