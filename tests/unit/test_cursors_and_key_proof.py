"""Cursor sealing and key-rotation proofs: the pure parts."""

from __future__ import annotations

import pytest

from fleetlink.auth.key_proof import sign_key_proof, verify_key_proof
from fleetlink.auth.keys import generate_private_key
from fleetlink.core.entities import KeyAlg
from fleetlink.core.errors import InvalidInput, Unprocessable
from fleetlink.store.cursors import CursorCodec

AGENT = "agt_01J0000000000000000000000A"
NOW = 1_800_000_000


def test_a_sealed_cursor_opens_for_its_scope_only() -> None:
    # Given a cursor sealed for one list and filter
    codec = CursorCodec(b"k" * 32)
    cursor = codec.seal("agents|state=active", {"s": 3, "k": None})
    # Then it opens there, and not for another filter, nor under another server key
    assert codec.open("agents|state=active", cursor) == {"s": 3, "k": None}
    with pytest.raises(InvalidInput):
        codec.open("agents|state=revoked", cursor)
    with pytest.raises(InvalidInput):
        CursorCodec(b"x" * 32).open("agents|state=active", cursor)


@pytest.mark.parametrize("cursor", ["", ".", "abc", "a.b", "e30." + "A" * 22, "x" * 5000])
def test_garbage_cursors_are_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput):
        CursorCodec().open("tasks|state=", cursor)


def test_a_short_cursor_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        CursorCodec(b"short")


@pytest.mark.parametrize("alg", [KeyAlg.ED25519, KeyAlg.RSA_PSS_SHA512])
def test_a_key_proof_verifies_for_its_agent_and_time_only(alg: KeyAlg) -> None:
    # Given a proof by a new key for one agent at one moment
    key = generate_private_key(alg, rsa_bits=2048)
    proof = sign_key_proof(key, AGENT, alg, NOW)
    # Then it verifies for them, and not for another agent, another time, or once stale
    verify_key_proof(key.public_key(), AGENT, alg, NOW, proof, now_s=NOW + 10, max_skew_s=300)
    for agent_id, created, now_s in (
        (AGENT[:-1] + "B", NOW, NOW),
        (AGENT, NOW + 1, NOW),
        (AGENT, NOW, NOW + 301),
    ):
        with pytest.raises(Unprocessable):
            verify_key_proof(key.public_key(), agent_id, alg, created, proof, now_s=now_s, max_skew_s=300)


def test_a_proof_by_another_key_does_not_verify() -> None:
    key, other = generate_private_key(KeyAlg.ED25519), generate_private_key(KeyAlg.ED25519)
    proof = sign_key_proof(other, AGENT, KeyAlg.ED25519, NOW)
    with pytest.raises(Unprocessable):
        verify_key_proof(key.public_key(), AGENT, KeyAlg.ED25519, NOW, proof, now_s=NOW, max_skew_s=300)


def test_deployed_functions_share_the_cursor_key_from_their_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the cursor key secret in Secrets Manager (moto) and two containers configured with its ARN,
    when one seals a cursor, then the other opens it, and so does the key given as its plain value."""
    import boto3
    from moto import mock_aws

    from fleetlink.api.deps import Deps
    from fleetlink.api.settings import Settings
    from fleetlink.core.clock import FixedClock

    value = "c" * 64
    for name, setting in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, setting)
    monkeypatch.delenv("FLEETLINK_CURSOR_KEY", raising=False)
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = secrets.create_secret(Name="cursor-key", SecretString=value)["ARN"]
        monkeypatch.setenv("FLEETLINK_CURSOR_KEY_SECRET_ARN", arn)
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        first, second = (Deps(Settings.from_env(), FixedClock(NOW * 1000)) for _ in range(2))
        cursor = first.cursors.seal("tokens", {"k": None})
        assert second.cursors.open("tokens", cursor) == {"k": None}
    monkeypatch.delenv("FLEETLINK_CURSOR_KEY_SECRET_ARN")
    monkeypatch.setenv("FLEETLINK_CURSOR_KEY", value)
    assert Deps(Settings.from_env(), FixedClock(NOW * 1000)).cursors.open("tokens", cursor) == {"k": None}
