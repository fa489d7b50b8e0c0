"""Proof of possession of a new signing key, for key rotation (``POST /v1/agents/{agent_id}/keys``).

The proof is the NEW key's signature over this string (UTF-8, lines joined by ``\\n``, no
trailing newline)::

    fleetlink-key-proof-v1
    <agent_id>
    <key_alg>
    <lower-case hex SHA-256 of the new key's DER SubjectPublicKeyInfo>
    <created, epoch seconds, decimal>

signed as RFC 9421 signs with the same algorithm (Ed25519; or RSA-PSS with SHA-512, MGF1-SHA-512
and a 64-byte salt), sent base64url-encoded without padding. It binds the new key to one agent id
and one moment: it cannot install the key on another agent, and it goes stale after the signature
skew (300 s). The request carrying it is itself signed by the agent's CURRENT key, so a rotation
needs both keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from fleetlink.auth.keys import PrivateKey, PublicKey
from fleetlink.core.entities import KeyAlg
from fleetlink.core.errors import Unprocessable

PROOF_LABEL = "fleetlink-key-proof-v1"
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)


def key_proof_message(agent_id: str, key_alg: KeyAlg, public_key: PublicKey, created: int) -> bytes:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    lines = (PROOF_LABEL, agent_id, key_alg.value, hashlib.sha256(der).hexdigest(), str(created))
    return "\n".join(lines).encode()


def sign_key_proof(private_key: PrivateKey, agent_id: str, key_alg: KeyAlg, created: int) -> str:
    message = key_proof_message(agent_id, key_alg, private_key.public_key(), created)
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        signature = private_key.sign(message)
    else:
        signature = private_key.sign(message, _PSS, hashes.SHA512())
    return base64.urlsafe_b64encode(signature).decode().rstrip("=")


def verify_key_proof(
    public_key: PublicKey,
    agent_id: str,
    key_alg: KeyAlg,
    created: int,
    proof: str,
    *,
    now_s: int,
    max_skew_s: int,
) -> None:
    """Raise Unprocessable (422 key-proof-invalid) unless ``proof`` is fresh and made by ``public_key``."""
    if abs(now_s - created) > max_skew_s:
        raise Unprocessable(
            f"the key proof was made more than {max_skew_s} s from now", code="key-proof-invalid"
        )
    message = key_proof_message(agent_id, key_alg, public_key, created)
    try:
        signature = base64.urlsafe_b64decode(proof + "=" * (-len(proof) % 4))
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, message)
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, message, _PSS, hashes.SHA512())
    except (InvalidSignature, ValueError, binascii.Error):
        raise Unprocessable("the proof is not the new key's signature", code="key-proof-invalid") from None
