"""A release's signed manifest: the platform, the signature check and the download it vouches for.

Standard library only, and no import of the rest of fleetlink: the served install script carries this
module and ``node`` to nodes that have nothing but ``python3`` (>= 3.11), so the signature check is a
small Ed25519 verifier (RFC 8032, section 6) here; installed agents check with ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ARTIFACT_NAME = "fleetlink-agent"
#: What an artifact's signature covers: this line, then the manifest as canonical JSON.
MANIFEST_CONTEXT = b"fleetlink-release-v1\n"
#: What a release key change's signature (by the old key) covers: this line, then the new raw key.
ROTATION_CONTEXT = b"fleetlink-release-key-rotation-v1\n"
PLATFORMS = ("linux-x86_64", "linux-aarch64")
VERSION_PATTERN = r"^[0-9]+(\.[0-9]+){1,3}([a-z0-9.+-]{0,32})$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MAX_ARTIFACT_BYTES = 256 * 1024 * 1024
#: DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows.
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


class ReleaseError(Exception):
    """A release that must not be installed (bad signature, wrong platform, no space, ...)."""


# --- manifest ---------------------------------------------------------------------------------------


def manifest_bytes(version: str, platform_name: str, sha256: str, size: int) -> bytes:
    """The exact bytes a release signature covers."""
    fields = {
        "name": ARTIFACT_NAME,
        "platform": platform_name,
        "sha256": sha256,
        "size": size,
        "version": version,
    }
    return MANIFEST_CONTEXT + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def artifact_file_name(version: str, platform_name: str) -> str:
    return f"{ARTIFACT_NAME}-{version}-{platform_name}.tar.gz"


def this_platform() -> str:
    """This machine's release platform (``linux-x86_64`` or ``linux-aarch64``)."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    name = f"{platform.system().lower()}-{machine}"
    if name not in PLATFORMS:
        raise ReleaseError(
            f"no fleetlink agent release for this platform ({name}); there are {', '.join(PLATFORMS)}"
        )
    return name


def version_key(version: str) -> tuple[tuple[int, ...], str]:
    """Sort key of a version: numbers, then suffix (``0.2.0`` < ``0.10.0``; ``0.2.0rc1`` < ``0.2.0``)."""
    match = re.match(r"^([0-9]+(?:\.[0-9]+)*)(.*)$", version)
    if not match:
        return ((), version)
    return (tuple(int(part) for part in match.group(1).split(".")), match.group(2) or "~")


# --- Ed25519 verification (RFC 8032, 5.1.7), for the bootstrap only --------------------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    return _P - x if (x & 1) != sign else x


_Point = tuple[int, int, int, int]
_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0) or 0
_G: _Point = (_GX, _GY, 1, _GX * _GY % _P)


def _add(p: _Point, q: _Point) -> _Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f, g * h, f * g, e * h)


def _multiply(scalar: int, point: _Point) -> _Point:
    result: _Point = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _decompress(raw: bytes) -> _Point | None:
    y = int.from_bytes(raw, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is valid for ``message`` under the raw 32-byte ``public_key``."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a, r = _decompress(public_key), _decompress(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % _L
    left, right = _multiply(s, _G), _add(r, _multiply(h, a))
    return (left[0] * right[2] - right[0] * left[2]) % _P == 0 and (
        left[1] * right[2] - right[1] * left[2]
    ) % _P == 0


def raw_public_key(pem: str) -> bytes:
    """The raw 32 bytes of an Ed25519 public key in PEM (SubjectPublicKeyInfo)."""
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    try:
        der = base64.b64decode(body, validate=True)
    except ValueError:
        raise ReleaseError("the release key is not PEM") from None
    if len(der) != 44 or not der.startswith(_ED25519_SPKI_PREFIX):
        raise ReleaseError("the release key is not an Ed25519 public key")
    return der[len(_ED25519_SPKI_PREFIX) :]


def key_id_of(pem: str) -> str:
    return hashlib.sha256(raw_public_key(pem)).hexdigest()[:16]


def check_signature(pem: str, release: dict[str, Any]) -> None:
    """ReleaseError unless the release's signature is the key's over its manifest."""
    message = manifest_bytes(release["version"], release["platform"], release["sha256"], int(release["size"]))
    try:
        signature = base64.b64decode(str(release.get("signature") or ""), validate=True)
    except ValueError:
        signature = b""
    if not ed25519_verify(raw_public_key(pem), message, signature):
        raise ReleaseError(
            f"release {release['version']} ({release['platform']}) is not signed by the pinned release key "
            f"{key_id_of(pem)}: refused"
        )


# --- download ---------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, destination: Path, release: dict[str, Any], timeout_s: float = 60.0) -> Path:
    """Fetch the artifact to ``destination`` (via a ``.partial`` file), its size and SHA-256 checked
    against the (already verified) manifest; a cut or altered download is removed and refused."""
    expected_size = int(release["size"])
    destination.parent.mkdir(parents=True, exist_ok=True)
    ensure_space(destination.parent, expected_size)
    partial = destination.with_name(destination.name + ".partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, partial.open("wb") as out:  # noqa: S310 - an https/presigned URL the API gave
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > expected_size:
                    raise ReleaseError("the download is larger than the signed size: refused")
                digest.update(chunk)
                out.write(chunk)
    except (OSError, urllib.error.URLError) as error:
        partial.unlink(missing_ok=True)
        raise ReleaseError(f"the download failed: {error}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if size != expected_size or digest.hexdigest() != release["sha256"]:
        partial.unlink(missing_ok=True)
        raise ReleaseError(
            f"the download does not match the signed release ({size} of {expected_size} bytes, "
            "or another SHA-256): cut short or tampered, refused"
        )
    os.replace(partial, destination)
    return destination


def ensure_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise ReleaseError(f"not enough disk space in {directory}: {free} bytes free, {needed} needed")
