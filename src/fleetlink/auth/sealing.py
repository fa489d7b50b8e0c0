"""Secrets sealed to one agent: only the holder of the agent's private encryption key can open them.

Two standard constructions, chosen by the recipient's public key:

- X25519: HPKE (RFC 9180) base mode, suite DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 /
  ChaCha20-Poly1305, as implemented by ``cryptography``. ``context`` is part of the HPKE ``info``.
  Sealed form: ``fl1.hpke-x25519-sha256-chacha20poly1305.<b64url(enc || ciphertext)>``.
- RSA (at least 2048 bits): a fresh AES-256-GCM key wrapped with RSA-OAEP (SHA-256, MGF1-SHA-256);
  ``context`` is part of the GCM associated data.
  Sealed form: ``fl1.rsa-oaep256-a256gcm.<b64url(wrapped key)>.<b64url(nonce)>.<b64url(ciphertext)>``.

``context`` binds a blob to its use (for example ``b"tunnel:tun_…"``): opening it under another
context fails, so a blob cannot be replayed elsewhere. Plaintexts are capped at ``MAX_PLAINTEXT_BYTES``.
Every failure to open (wrong key, wrong context, tampering, malformed input) is one ``SealError``
that says nothing about the plaintext.

The agent keeps its X25519 encryption key in ``encryption_key.pem`` (PKCS #8, mode 0600) beside its
signing key; see ``load_or_create_encryption_key``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fleetlink.auth.files import write_private_file

MAX_PLAINTEXT_BYTES = 8 * 1024
"""The largest secret that can be sealed (8 KiB: provider tokens are well under 1 KiB)."""

MIN_RSA_BITS = 2048
ENCRYPTION_KEY_FILE = "encryption_key.pem"

VERSION = "fl1"
ALG_HPKE_X25519 = "hpke-x25519-sha256-chacha20poly1305"
ALG_RSA_OAEP = "rsa-oaep256-a256gcm"

_HPKE_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_HPKE_ENC_BYTES = 32
_AEAD_TAG_BYTES = 16
_GCM_NONCE_BYTES = 12
_MAX_RSA_BITS = 16384
# Nothing legitimately sealed is longer than this; longer input is refused before any decoding.
MAX_SEALED_CHARS = (
    4 * (_MAX_RSA_BITS // 8 + _GCM_NONCE_BYTES + MAX_PLAINTEXT_BYTES + _AEAD_TAG_BYTES) // 3 + 64
)

EncryptionPrivateKey: TypeAlias = x25519.X25519PrivateKey | rsa.RSAPrivateKey


class SealError(Exception):
    """A secret could not be sealed (bad recipient key, plaintext too large) or opened."""


def generate_encryption_key() -> x25519.X25519PrivateKey:
    """A new X25519 key for receiving sealed secrets."""
    return x25519.X25519PrivateKey.generate()


def encryption_public_key_pem(key: EncryptionPrivateKey) -> str:
    """The SubjectPublicKeyInfo PEM of an encryption key's public half (what the agent registers)."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def seal(recipient_public_key_pem: str, plaintext: bytes, *, context: bytes = b"") -> str:
    """Seal ``plaintext`` to the holder of the private half of ``recipient_public_key_pem``."""
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise SealError(f"a sealed secret holds at most {MAX_PLAINTEXT_BYTES} bytes, not {len(plaintext)}")
    recipient = _load_recipient(recipient_public_key_pem)
    if isinstance(recipient, x25519.X25519PublicKey):
        try:
            sealed = _HPKE_SUITE.encrypt(plaintext, recipient, info=_bound(ALG_HPKE_X25519, context))
        except ValueError as exc:  # a low-order point: no shared secret can be agreed
            raise SealError("the recipient's X25519 key is unusable") from exc
        return _join(ALG_HPKE_X25519, sealed)
    content_key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(_GCM_NONCE_BYTES)
    ciphertext = AESGCM(content_key).encrypt(nonce, plaintext, _bound(ALG_RSA_OAEP, context))
    return _join(ALG_RSA_OAEP, recipient.encrypt(content_key, _OAEP), nonce, ciphertext)


def open_sealed(private_key: EncryptionPrivateKey, sealed: str, *, context: bytes = b"") -> bytes:
    """Open a blob made by ``seal`` for this key under the same ``context``; raise SealError otherwise."""
    alg, parts = _split(sealed)
    try:
        if alg == ALG_HPKE_X25519 and len(parts) == 1:
            if not isinstance(private_key, x25519.X25519PrivateKey):
                raise SealError("this secret was sealed to an X25519 key")
            if len(parts[0]) < _HPKE_ENC_BYTES + _AEAD_TAG_BYTES:
                raise SealError("the sealed secret is truncated")
            return _HPKE_SUITE.decrypt(parts[0], private_key, info=_bound(alg, context))
        if alg == ALG_RSA_OAEP and len(parts) == 3:
            if not isinstance(private_key, rsa.RSAPrivateKey):
                raise SealError("this secret was sealed to an RSA key")
            wrapped, nonce, ciphertext = parts
            if len(nonce) != _GCM_NONCE_BYTES:
                raise SealError("the sealed secret is malformed")
            content_key = private_key.decrypt(wrapped, _OAEP)
            return AESGCM(content_key).decrypt(nonce, ciphertext, _bound(alg, context))
    except (InvalidTag, ValueError) as exc:
        raise SealError("the sealed secret cannot be opened with this key and context") from exc
    raise SealError("the sealed secret has an unknown format")


def encryption_key_to_pem(key: x25519.X25519PrivateKey) -> str:
    """Serialise an encryption key as unencrypted PKCS #8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_encryption_key(path: Path) -> x25519.X25519PrivateKey:
    """Read an X25519 encryption key from a PEM file; raise SealError if it holds anything else."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SealError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, x25519.X25519PrivateKey):
        raise SealError(f"{path} does not hold an X25519 key")
    return key


def save_encryption_key(path: Path, key: x25519.X25519PrivateKey) -> bool:
    """Write ``key`` to a new 0600 file at ``path``; return False (writing nothing) if it exists.

    The PEM goes to a fresh exclusive 0600 file first and is hard-linked into place, so a reader
    never sees half a key and a concurrent writer never replaces one.
    """
    return write_private_file(path, encryption_key_to_pem(key).encode())


def load_or_create_encryption_key(state_dir: Path) -> x25519.X25519PrivateKey:
    """The agent's encryption key in ``state_dir``, generated and saved (0600) on first use."""
    path = state_dir / ENCRYPTION_KEY_FILE
    if not path.exists():
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        save_encryption_key(path, generate_encryption_key())
    return load_encryption_key(path)


_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _bound(alg: str, context: bytes) -> bytes:
    """What each construction authenticates besides the plaintext: format, algorithm and context."""
    return f"{VERSION}.{alg}\x00".encode() + context


def _load_recipient(pem: str) -> x25519.X25519PublicKey | rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SealError("the recipient's encryption key is not a PEM public key") from exc
    if isinstance(key, x25519.X25519PublicKey):
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= _MAX_RSA_BITS:
            raise SealError(f"an RSA encryption key must have {MIN_RSA_BITS} to {_MAX_RSA_BITS} bits")
        return key
    raise SealError("the recipient's encryption key must be X25519 or RSA")


def _b64(part: bytes) -> str:
    return base64.urlsafe_b64encode(part).rstrip(b"=").decode()


def _join(alg: str, *parts: bytes) -> str:
    return ".".join((VERSION, alg, *map(_b64, parts)))


def _split(sealed: str) -> tuple[str, list[bytes]]:
    if len(sealed) > MAX_SEALED_CHARS or not sealed.isascii():
        raise SealError("the sealed secret is malformed")
    version, _, rest = sealed.partition(".")
    alg, _, body = rest.partition(".")
    if version != VERSION or not body:
        raise SealError("the sealed secret has an unknown format")
    try:
        parts = [base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in body.split(".")]
    except (binascii.Error, ValueError) as exc:
        raise SealError("the sealed secret is malformed") from exc
    # Only the canonical unpadded encoding is accepted, so one blob has exactly one spelling.
    if [_b64(part) for part in parts] != body.split("."):
        raise SealError("the sealed secret is malformed")
    return alg, parts
