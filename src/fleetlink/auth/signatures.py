"""RFC 9421 HTTP Message Signatures for agent requests, on top of ``http_message_signatures``.

The server reads the signature parameters first (to look up the key by ``keyid``), then verifies the
request with :func:`verify_request`. Clients sign with :func:`sign_request`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import http_sf
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureAlgorithm,
    MappingKeyResolver,
    algorithms,
)

from fleetlink.auth.keys import PrivateKey, PublicKey
from fleetlink.core.entities import KeyAlg
from fleetlink.core.errors import Unauthenticated

MAX_KEY_ID_CHARS = 256
MAX_NONCE_CHARS = 128
DEFAULT_MAX_SKEW_S = 300
# Library error messages name components and parameters, never key or signature bytes; cap them anyway.
_MAX_DETAIL_CHARS = 200

_ALGORITHMS: dict[KeyAlg, type[HTTPSignatureAlgorithm]] = {
    KeyAlg.ED25519: algorithms.ED25519,
    KeyAlg.RSA_PSS_SHA512: algorithms.RSA_PSS_SHA512,
}
_SIGNED_COMPONENTS = ("@method", "@target-uri", "@authority")


@dataclass(frozen=True)
class IncomingRequest:
    """What the server knows of a request; header names are lower-cased (repeated fields joined by ", ")."""

    method: str
    target_uri: str
    headers: Mapping[str, str]
    body: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        merged: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        object.__setattr__(self, "headers", merged)


@dataclass(frozen=True)
class SignatureParams:
    """The signature parameters fleetlink relies on; ``created`` is in epoch seconds."""

    key_id: str
    nonce: str
    created: int
    alg: str | None


@dataclass
class _Message:
    """The request shape ``http_message_signatures`` resolves components from."""

    method: str
    url: str
    headers: dict[str, str]


class _Verifier(HTTPMessageVerifier):
    """Library verifier without its wall-clock checks: :func:`verify_request` checks time with ``now_s``."""

    def validate_created_and_expires(self, sig_input: object, max_age: object = None) -> None:
        """Skip the library's checks (wall clock, 5 s future skew)."""


def _malformed(detail: str) -> Unauthenticated:
    return Unauthenticated(detail, code="signature-malformed")


def _parse_dictionary(value: str, header: str) -> dict[str, tuple[object, dict[str, object]]]:
    def reject_duplicate(key: str, context: str) -> None:
        if context == "dictionary":
            raise ValueError(f"duplicate label {key!r}")

    try:
        parsed = http_sf.parse(value.encode(), tltype="dictionary", on_duplicate_key=reject_duplicate)
    except (ValueError, TypeError) as exc:
        raise _malformed(f"the {header} header is not a structured field dictionary") from exc
    if not isinstance(parsed, dict):
        raise _malformed(f"the {header} header is not a structured field dictionary")
    members: dict[str, tuple[object, dict[str, object]]] = {}
    for label, member in parsed.items():
        if not (isinstance(member, tuple) and isinstance(member[1], dict)):
            raise _malformed(f"the {header} header member {label!r} is malformed")
        members[label] = (member[0], dict(member[1]))
    return members


def _signature_params(params: Mapping[str, object]) -> SignatureParams:
    key_id, nonce, created, alg = (params.get(name) for name in ("keyid", "nonce", "created", "alg"))
    if not isinstance(key_id, str) or not 1 <= len(key_id) <= MAX_KEY_ID_CHARS:
        raise _malformed(f"the signature needs a keyid string of 1-{MAX_KEY_ID_CHARS} characters")
    if not isinstance(nonce, str) or not 1 <= len(nonce) <= MAX_NONCE_CHARS:
        raise _malformed(f"the signature needs a nonce string of 1-{MAX_NONCE_CHARS} characters")
    if isinstance(created, bool) or not isinstance(created, int):
        raise _malformed("the signature needs a created integer (epoch seconds)")
    if alg is not None and not isinstance(alg, str):
        raise _malformed("the signature alg parameter must be a string")
    return SignatureParams(key_id=key_id, nonce=nonce, created=created, alg=alg)


def read_signature_params(request: IncomingRequest) -> SignatureParams:
    """Parse the request's single signature's parameters without verifying it (to find the key by keyid)."""
    signature_input = request.headers.get("signature-input")
    signature = request.headers.get("signature")
    if signature_input is None or signature is None:
        raise Unauthenticated(
            "the request is not signed: Signature-Input and Signature headers are required",
            code="signature-missing",
        )
    inputs = _parse_dictionary(signature_input, "Signature-Input")
    signatures = _parse_dictionary(signature, "Signature")
    if len(inputs) != 1 or inputs.keys() != signatures.keys():
        raise _malformed(
            "Signature-Input and Signature must carry exactly one signature, under the same label"
        )
    ((label, (components, params)),) = inputs.items()
    if not isinstance(components, list):
        raise _malformed(f"Signature-Input member {label!r} must be an inner list of components")
    if not isinstance(signatures[label][0], bytes):
        raise _malformed(f"Signature member {label!r} must be a byte sequence")
    return _signature_params(params)


def _failure_detail(exc: Exception) -> str:
    reason = str(exc)[:_MAX_DETAIL_CHARS]
    return f"the signature does not verify: {reason}" if reason else "the signature does not verify"


def _check_time(created: int, expires: object, now_s: int, max_skew_s: int) -> None:
    if created < now_s - max_skew_s:
        raise Unauthenticated(
            f"the signature was created {now_s - created} s ago (limit {max_skew_s} s)",
            code="signature-expired",
        )
    if created > now_s + max_skew_s:
        raise Unauthenticated(
            f"the signature was created {created - now_s} s in the future (limit {max_skew_s} s)",
            code="signature-expired",
        )
    if isinstance(expires, int) and expires < now_s:
        raise Unauthenticated("the signature has expired", code="signature-expired")


def _check_coverage(covered_components: Mapping[str, str], request: IncomingRequest) -> None:
    covered = set(covered_components)
    body = request.body
    if '"@method"' not in covered:
        raise Unauthenticated("the signature must cover @method", code="signature-components-missing")
    if '"@target-uri"' not in covered and not {'"@path"', '"@authority"'} <= covered:
        raise Unauthenticated(
            "the signature must cover @target-uri (or @path with @authority)",
            code="signature-components-missing",
        )
    if urlsplit(request.target_uri).query and not {'"@target-uri"', '"@query"'} & covered:
        raise Unauthenticated(
            "a request with a query string must be signed over @query or @target-uri",
            code="signature-components-missing",
        )
    try:
        digest_checked = ContentDigest.verify_components(covered_components, body)
    except HTTPMessageSignaturesException as exc:
        raise Unauthenticated(
            f"Content-Digest does not match the body: {str(exc)[:_MAX_DETAIL_CHARS]}",
            code="content-digest-mismatch",
        ) from exc
    if body and not digest_checked:
        raise Unauthenticated(
            "a request with a body must be signed over content-digest", code="signature-components-missing"
        )


def verify_request(
    request: IncomingRequest,
    public_key: PublicKey,
    key_alg: KeyAlg,
    *,
    now_s: int,
    max_skew_s: int = DEFAULT_MAX_SKEW_S,
) -> SignatureParams:
    """Verify the request's signature, timing, coverage and body digest; return the verified parameters.

    ``public_key`` is the key of the keyid that :func:`read_signature_params` returned; a signature
    naming another keyid fails. Every failure raises :class:`Unauthenticated` with a specific ``code``.
    Replay checks on the returned ``nonce`` are the caller's job.
    """
    params = read_signature_params(request)
    if params.alg is not None and params.alg != key_alg.value:
        raise Unauthenticated(
            f"the signature alg {params.alg!r} does not match the key's {key_alg.value!r}",
            code="signature-alg-mismatch",
        )
    verifier = _Verifier(
        signature_algorithm=_ALGORITHMS[key_alg],
        # Bound to the keyid read above, so the verified keyid is the one the caller looked up.
        key_resolver=MappingKeyResolver(public_keys={params.key_id: public_key}, private_keys={}),
    )
    message = _Message(request.method, request.target_uri, dict(request.headers))
    try:
        result = verifier.verify(message, max_age=None)[0]
    except Exception as exc:  # the library and cryptography raise various types: all mean "not authentic"
        raise Unauthenticated(_failure_detail(exc), code="signature-invalid") from exc
    verified = _signature_params(result.parameters)
    _check_time(verified.created, result.parameters.get("expires"), now_s, max_skew_s)
    _check_coverage(result.covered_components, request)
    return verified


def sign_request(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    *,
    private_key: PrivateKey,
    key_id: str,
    key_alg: KeyAlg,
    created: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Sign a request; return the headers to add (Signature-Input, Signature, and Content-Digest with a body).

    Covers @method, @target-uri, @authority, and content-digest when the body is not empty. ``created``
    defaults to now and ``nonce`` to a random URL-safe string. ``headers`` is not modified; a
    Content-Digest already in it is checked against the body and reused. Raises
    ``http_message_signatures.HTTPMessageSignaturesException`` for an unusable URL, method or key.
    """
    import secrets  # client side only: keep it off the server's cold start

    when = (
        datetime.datetime.now(datetime.UTC)
        if created is None
        else datetime.datetime.fromtimestamp(created, datetime.UTC)
    )
    message = _Message(method, url, dict(headers))
    signer = HTTPMessageSigner(
        signature_algorithm=_ALGORITHMS[key_alg],
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: private_key}),
    )
    signer.sign(
        message,
        key_id=key_id,
        created=when,
        nonce=secrets.token_urlsafe(16) if nonce is None else nonce,
        covered_component_ids=_SIGNED_COMPONENTS,
        body=body or None,
        use_existing_digest=any(name.lower() == "content-digest" for name in headers),
    )
    signed = {name.lower(): value for name, value in message.headers.items()}
    added = {"Signature-Input": signed["signature-input"], "Signature": signed["signature"]}
    if body:
        added["Content-Digest"] = signed["content-digest"]
    return added
