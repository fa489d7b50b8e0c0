"""Secrets sealed to an agent: HPKE for X25519 recipients, RSA-OAEP-256 + AES-256-GCM for RSA ones."""

from __future__ import annotations

import base64
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa, x25519

from fleetlink.auth import sealing
from fleetlink.auth.keys import private_key_to_pem, public_key_pem
from fleetlink.auth.sealing import (
    ALG_HPKE_X25519,
    ALG_RSA_OAEP,
    MAX_PLAINTEXT_BYTES,
    EncryptionPrivateKey,
    SealError,
    encryption_public_key_pem,
    generate_encryption_key,
    open_sealed,
    seal,
)

SECRET = b"cf-tunnel-token-3f9a1c7e-PLAINTEXT-MARKER"
CONTEXT = b"tunnel:tun_01J0000000000000000000000"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(params=["x25519", "rsa"])
def key(request: pytest.FixtureRequest, rsa_key: rsa.RSAPrivateKey) -> EncryptionPrivateKey:
    return generate_encryption_key() if request.param == "x25519" else rsa_key


def other_key_like(key: EncryptionPrivateKey) -> EncryptionPrivateKey:
    if isinstance(key, rsa.RSAPrivateKey):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return generate_encryption_key()


def test_round_trip(key: EncryptionPrivateKey) -> None:
    # Given a secret sealed to a key under a context / When opened with that key and context
    sealed = seal(encryption_public_key_pem(key), SECRET, context=CONTEXT)
    # Then the secret comes back, and the blob names its construction
    assert open_sealed(key, sealed, context=CONTEXT) == SECRET
    expected_alg = ALG_RSA_OAEP if isinstance(key, rsa.RSAPrivateKey) else ALG_HPKE_X25519
    assert sealed.startswith(f"fl1.{expected_alg}.")
    assert sealed.isascii()


def test_empty_and_maximum_plaintexts_round_trip(key: EncryptionPrivateKey) -> None:
    pem = encryption_public_key_pem(key)
    for plaintext in (b"", b"\xff" * MAX_PLAINTEXT_BYTES):
        assert open_sealed(key, seal(pem, plaintext)) == plaintext


def test_sealing_twice_gives_different_blobs(key: EncryptionPrivateKey) -> None:
    pem = encryption_public_key_pem(key)
    assert seal(pem, SECRET) != seal(pem, SECRET)


def test_another_agents_key_cannot_open(key: EncryptionPrivateKey) -> None:
    # Given a secret sealed to one agent / When another agent's key of the same kind tries / Then it fails
    sealed = seal(encryption_public_key_pem(key), SECRET, context=CONTEXT)
    with pytest.raises(SealError):
        open_sealed(other_key_like(key), sealed, context=CONTEXT)


def test_a_key_of_the_other_kind_cannot_open(key: EncryptionPrivateKey, rsa_key: rsa.RSAPrivateKey) -> None:
    sealed = seal(encryption_public_key_pem(key), SECRET)
    wrong: EncryptionPrivateKey = generate_encryption_key() if key is rsa_key else rsa_key
    with pytest.raises(SealError):
        open_sealed(wrong, sealed)


def test_wrong_context_cannot_open(key: EncryptionPrivateKey) -> None:
    # Given a blob bound to one tunnel / When replayed for another tunnel or with no context / Then it fails
    sealed = seal(encryption_public_key_pem(key), SECRET, context=CONTEXT)
    for context in (b"tunnel:tun_other", b"", CONTEXT + b"x"):
        with pytest.raises(SealError):
            open_sealed(key, sealed, context=context)


def _flip_bit(part: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    raw[index % len(raw)] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def _tamper_each_part(sealed: str) -> list[str]:
    version, alg, *parts = sealed.split(".")
    tampered = []
    for position, part in enumerate(parts):
        for index in (0, len(part) // 2, -1):
            changed = list(parts)
            changed[position] = _flip_bit(part, index)
            tampered.append(".".join((version, alg, *changed)))
    return tampered


def test_any_flipped_bit_is_refused(key: EncryptionPrivateKey) -> None:
    # Given a sealed blob / When one bit of the key material, nonce or ciphertext changes / Then it fails
    sealed = seal(encryption_public_key_pem(key), SECRET, context=CONTEXT)
    for tampered in _tamper_each_part(sealed):
        with pytest.raises(SealError):
            open_sealed(key, tampered, context=CONTEXT)


def _swap_alg(sealed: str) -> str:
    version, alg, body = sealed.split(".", 2)
    return ".".join((version, ALG_RSA_OAEP if alg == ALG_HPKE_X25519 else ALG_HPKE_X25519, body))


MALFORMED: list[Callable[[str], str]] = [
    lambda s: s[:-4],  # truncated
    lambda s: s + "A",  # not canonical base64url
    lambda s: s + ".AAAA",  # an extra part
    lambda s: s.replace("fl1.", "fl2.", 1),  # unknown version
    lambda s: s.replace(f".{s.split('.')[1]}.", ".aes-ecb.", 1),  # unknown algorithm
    _swap_alg,  # the other construction named
    lambda s: s[:20] + "!" + s[21:],  # outside the alphabet
    lambda s: s[:20] + "é" + s[21:],  # not ASCII
    lambda _: "",
    lambda _: "fl1." + ALG_HPKE_X25519 + ".",
    lambda _: "fl1." + ALG_HPKE_X25519 + "." + "A" * 10,  # shorter than the HPKE encapsulated key
    lambda _: "fl1." + ALG_HPKE_X25519 + "." + "A" * (sealing.MAX_SEALED_CHARS + 1),
]


@pytest.mark.parametrize("mangle", MALFORMED)
def test_malformed_blobs_are_a_seal_error(key: EncryptionPrivateKey, mangle: Callable[[str], str]) -> None:
    sealed = seal(encryption_public_key_pem(key), SECRET)
    with pytest.raises(SealError):
        open_sealed(key, mangle(sealed))


def test_plaintext_over_the_cap_is_refused() -> None:
    # Given a secret one byte over the documented 8 KiB cap / When sealed / Then SealError names the cap
    pem = encryption_public_key_pem(generate_encryption_key())
    with pytest.raises(SealError, match=str(MAX_PLAINTEXT_BYTES)):
        seal(pem, b"x" * (MAX_PLAINTEXT_BYTES + 1))
    assert MAX_PLAINTEXT_BYTES == 8 * 1024


def test_blob_never_contains_the_plaintext(key: EncryptionPrivateKey) -> None:
    # Given a recognisable secret / When sealed / Then neither it nor any base64 spelling of it shows
    sealed = seal(encryption_public_key_pem(key), SECRET, context=CONTEXT)
    spellings = {SECRET.decode()}
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            spellings.add(encode(b"\0" * shift + SECRET).decode()[4:-4])
    for spelling in spellings:
        assert spelling not in sealed
    assert b"PLAINTEXT-MARKER" not in sealed.encode()


@pytest.mark.parametrize(
    "recipient",
    [
        "not a pem",
        public_key_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505 (refused)
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        x25519.X25519PublicKey.from_public_bytes(bytes(32))
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    ],
    ids=["garbage", "rsa-1024", "bad-der", "x25519-low-order"],
)
def test_unusable_recipient_keys_are_refused(recipient: str) -> None:
    with pytest.raises(SealError):
        seal(recipient, SECRET)


def test_a_signing_only_key_is_not_a_recipient() -> None:
    with pytest.raises(SealError, match="X25519 or RSA"):
        seal(public_key_pem(ed25519.Ed25519PrivateKey.generate()), SECRET)


def test_encryption_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    # Given an empty state dir / When the agent loads its encryption key twice
    state_dir = tmp_path / "state"
    first = sealing.load_or_create_encryption_key(state_dir)
    second = sealing.load_or_create_encryption_key(state_dir)
    # Then one key was generated, kept private, and opens what is sealed to its public half
    path = state_dir / sealing.ENCRYPTION_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert encryption_public_key_pem(first) == encryption_public_key_pem(second)
    assert open_sealed(second, seal(encryption_public_key_pem(first), SECRET)) == SECRET
    assert list(state_dir.iterdir()) == [path]


def test_saving_never_replaces_an_existing_key(tmp_path: Path) -> None:
    path = tmp_path / sealing.ENCRYPTION_KEY_FILE
    original = generate_encryption_key()
    assert sealing.save_encryption_key(path, original)
    assert not sealing.save_encryption_key(path, generate_encryption_key())
    assert encryption_public_key_pem(sealing.load_encryption_key(path)) == encryption_public_key_pem(original)


def test_loading_a_file_that_is_not_an_x25519_key_is_a_seal_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    rsa_file = tmp_path / "rsa.pem"
    rsa_file.write_text(private_key_to_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    for path in (garbage, rsa_file):
        with pytest.raises(SealError):
            sealing.load_encryption_key(path)
