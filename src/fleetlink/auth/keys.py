"""Signing keys: parse agents' public keys, and generate or serialise private keys for agents and tests."""

from __future__ import annotations

from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from fleetlink.core.entities import KeyAlg
from fleetlink.core.errors import InvalidInput

PublicKey: TypeAlias = ed25519.Ed25519PublicKey | rsa.RSAPublicKey
PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

MIN_RSA_BITS = 2048
DEFAULT_RSA_BITS = 3072


def load_public_key(pem: str, alg: KeyAlg) -> PublicKey:
    """Parse a PEM public key and check that it suits ``alg``; raise InvalidInput otherwise."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidInput("public_key is not a PEM public key", code="invalid-public-key") from exc
    if alg is KeyAlg.ED25519:
        if isinstance(key, ed25519.Ed25519PublicKey):
            return key
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidInput(
                f"an rsa-pss-sha512 key must have at least {MIN_RSA_BITS} bits, not {key.key_size}",
                code="invalid-public-key",
            )
        return key
    raise InvalidInput(f"public_key is not a key for {alg.value}", code="invalid-public-key")


def generate_private_key(alg: KeyAlg, *, rsa_bits: int = DEFAULT_RSA_BITS) -> PrivateKey:
    """Generate a new private key for ``alg``."""
    if alg is KeyAlg.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)


def private_key_to_pem(key: PrivateKey) -> str:
    """Serialise a private key as unencrypted PKCS #8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key_pem(private_key: PrivateKey) -> str:
    """Return the SubjectPublicKeyInfo PEM of a private key's public half."""
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load_private_key(pem: str) -> PrivateKey:
    """Parse an unencrypted PEM private key (Ed25519 or RSA); raise InvalidInput otherwise."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidInput("not an unencrypted PEM private key", code="invalid-private-key") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise InvalidInput("the private key must be Ed25519 or RSA", code="invalid-private-key")
    return key
