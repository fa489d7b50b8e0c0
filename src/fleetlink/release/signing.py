"""Release keys (Ed25519) and artifact signatures: made by the operator, checked by every node."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fleetlink.auth.files import write_private_file
from fleetlink.release.manifest import ROTATION_CONTEXT, manifest_bytes


class ReleaseSignatureError(Exception):
    """A signature, key or rotation that does not verify."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short stable name of a release key: the first 16 hex digits of the SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_pem(pem: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as error:
        raise ReleaseSignatureError(f"not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseSignatureError("a release key must be Ed25519")
    return key


def generate(private_path: Path) -> Ed25519PrivateKey:
    """A new release key: the private key to ``private_path`` (0600, never overwritten), the public
    key next to it (``.pub``)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    if not write_private_file(private_path, pem):
        raise FileExistsError(f"{private_path} exists: a release key is never overwritten")
    private_path.with_name(private_path.name + ".pub").write_text(public_pem(key.public_key()))
    return key


def load_private(path: Path) -> Ed25519PrivateKey:
    if path.stat().st_mode & 0o077:
        raise ReleaseSignatureError(f"{path} is readable by others: chmod 600 {path}")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseSignatureError(f"{path} is not an Ed25519 release key")
    return key


@dataclass(frozen=True)
class SignedRelease:
    version: str
    platform: str
    sha256: str
    size: int
    signature: str  # base64
    key_id: str


def sign_artifact(key: Ed25519PrivateKey, version: str, platform_name: str, artifact: Path) -> SignedRelease:
    """Hash ``artifact`` and sign its manifest."""
    digest = hashlib.sha256()
    size = 0
    with artifact.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    sha256 = digest.hexdigest()
    signature = key.sign(manifest_bytes(version, platform_name, sha256, size))
    return SignedRelease(
        version, platform_name, sha256, size, base64.b64encode(signature).decode(), key_id(key.public_key())
    )


def verify_manifest(
    public_key: Ed25519PublicKey, version: str, platform_name: str, sha256: str, size: int, signature: str
) -> None:
    """ReleaseSignatureError unless ``signature`` (base64) is the key's over this manifest."""
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, manifest_bytes(version, platform_name, sha256, size))
    except (InvalidSignature, ValueError):
        raise ReleaseSignatureError(
            f"the signature of {version} ({platform_name}) is not the release key's {key_id(public_key)}"
        ) from None


def rotation_message(new_key: Ed25519PublicKey) -> bytes:
    return ROTATION_CONTEXT + new_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign_rotation(old_key: Ed25519PrivateKey, new_key: Ed25519PublicKey) -> str:
    """The old key's consent to the new one (base64): what lets pinned nodes accept the new key."""
    return base64.b64encode(old_key.sign(rotation_message(new_key))).decode()


def verify_rotation(old_key: Ed25519PublicKey, new_key: Ed25519PublicKey, signature: str) -> None:
    try:
        old_key.verify(base64.b64decode(signature, validate=True), rotation_message(new_key))
    except (InvalidSignature, ValueError):
        raise ReleaseSignatureError(
            f"the key change to {key_id(new_key)} is not signed by the pinned key {key_id(old_key)}"
        ) from None
