"""The agent's identity on disk: a 0600 signing key, loaded rather than regenerated, and identity.json."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fleetlink.agent.identity import (
    STATE_DIR_ENV,
    Identity,
    IdentityError,
    IdentityStore,
    resolve_state_dir,
)
from fleetlink.auth.keys import private_key_to_pem
from fleetlink.core.entities import KeyAlg


def test_key_file_is_created_readable_by_the_owner_only(tmp_path: Path) -> None:
    # Given an empty state dir
    store = IdentityStore(tmp_path / "agent")
    # When the key is loaded-or-created
    store.load_or_create_key()
    # Then the key file is mode 0600 and its directory 0700
    assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o700


def test_new_key_is_ed25519_by_default(tmp_path: Path) -> None:
    _, alg = IdentityStore(tmp_path).load_or_create_key()
    assert alg is KeyAlg.ED25519


def test_existing_key_is_reloaded_not_regenerated(tmp_path: Path) -> None:
    # Given a state dir where a key was created
    first_key, _ = IdentityStore(tmp_path).load_or_create_key()
    written = (tmp_path / "signing_key.pem").read_bytes()
    # When another store on the same dir loads-or-creates
    again, alg = IdentityStore(tmp_path).load_or_create_key(KeyAlg.ED25519)
    # Then it is the same key and the file is untouched
    assert private_key_to_pem(again) == private_key_to_pem(first_key)
    assert alg is KeyAlg.ED25519
    assert (tmp_path / "signing_key.pem").read_bytes() == written


def test_asking_for_another_algorithm_never_replaces_the_key(tmp_path: Path) -> None:
    # Given an Ed25519 key
    store = IdentityStore(tmp_path)
    store.load_or_create_key(KeyAlg.ED25519)
    before = store.key_path.read_bytes()
    # When an RSA-PSS key is asked for / Then it fails and the key stays
    with pytest.raises(IdentityError, match="ed25519"):
        store.load_or_create_key(KeyAlg.RSA_PSS_SHA512)
    assert store.key_path.read_bytes() == before


def test_identity_round_trips(tmp_path: Path) -> None:
    # Given a saved identity
    store = IdentityStore(tmp_path)
    identity = Identity(
        agent_id="agt_01JABCDEFGHJKMNPQRSTVWXYZ0",
        api_url="https://api.fleetlink.example",
        key_alg=KeyAlg.RSA_PSS_SHA512,
        fingerprint="ab" * 32,
        registered_at=1_800_000_000_000,
    )
    store.save_identity(identity)
    # When it is loaded from a fresh store / Then it is the same
    assert IdentityStore(tmp_path).load_identity() == identity


def test_no_identity_before_registration(tmp_path: Path) -> None:
    assert IdentityStore(tmp_path).load_identity() is None


def test_corrupt_identity_file_is_reported(tmp_path: Path) -> None:
    # Given an identity.json that is not an identity / Then loading says so
    (tmp_path / "identity.json").write_text('{"agent_id": "agt_x"}')
    with pytest.raises(IdentityError, match=r"identity\.json"):
        IdentityStore(tmp_path).load_identity()


def test_state_dir_comes_from_the_environment_unless_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given FLEETLINK_STATE_DIR set
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "from-env"))
    # Then it is used by default, and an explicit dir wins over it
    assert resolve_state_dir() == tmp_path / "from-env"
    assert resolve_state_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_default_state_dir_is_under_the_home_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_state_dir() == tmp_path / ".fleetlink" / "agent"
