"""Releases on the dev stack over real HTTP: the release key changes only with the old key's
consent; a release is published once its bytes are in the bucket (moto S3 on loopback), which the
dev stack keeps in its data folder across restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetlink.local.server import DevStack
from fleetlink.release import signing

TOKEN = "releases-operator-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _call(stack: DevStack, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{stack.url}/v1{path}", headers=HEADERS, timeout=30, **kwargs)


def _stack(data_dir: Path | None) -> DevStack:
    return DevStack(port=0, cleanup_every_s=0, access_log=None, operator_token=TOKEN, data_dir=data_dir)


def test_the_release_key_changes_only_with_the_old_keys_signature() -> None:
    old, new, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    with _stack(None) as stack:
        # Given no key yet: reading it (and the install script) is a 404 problem
        assert _call(stack, "GET", "/releases/key").status_code == 404
        assert httpx.get(f"{stack.url}/v1/agent/install.sh", timeout=30).status_code == 404
        # When the first key is set, Then it is taken; setting it again changes nothing
        first = {"public_key": signing.public_pem(old.public_key())}
        assert _call(stack, "PUT", "/releases/key", json=first).status_code == 200
        assert _call(stack, "PUT", "/releases/key", json=first).status_code == 200
        # When another key comes unsigned, or signed by a stranger, Then it is a conflict
        second = {"public_key": signing.public_pem(new.public_key())}
        unsigned = _call(stack, "PUT", "/releases/key", json=second)
        assert unsigned.status_code == 409
        assert unsigned.json()["type"].endswith("release-key-rotation-unsigned")
        forged = second | {"rotation_signature": signing.sign_rotation(stranger, new.public_key())}
        assert _call(stack, "PUT", "/releases/key", json=forged).status_code == 409
        # When the old key signs it, Then it is the key, naming its predecessor
        signed = second | {"rotation_signature": signing.sign_rotation(old, new.public_key())}
        moved = _call(stack, "PUT", "/releases/key", json=signed)
        assert moved.status_code == 200
        assert moved.json()["previous_key_id"] == signing.key_id(old.public_key())
        # And a key that is not Ed25519 PEM is refused as bad input
        bad = _call(
            stack, "PUT", "/releases/key", json={"public_key": "-----BEGIN PUBLIC KEY-----\n" + "A" * 80}
        )
        assert bad.status_code == 400


def test_a_published_release_survives_a_restart_of_the_dev_stack(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    artifact = tmp_path / "agent.tar.gz"
    artifact.write_bytes(b"signed agent bytes" * 100)
    signed = signing.sign_artifact(key, "3.0.0", "linux-x86_64", artifact)
    body = {k: getattr(signed, k) for k in ("version", "platform", "sha256", "size", "signature")}
    with _stack(tmp_path / "data") as stack:
        _call(stack, "PUT", "/releases/key", json={"public_key": signing.public_pem(key.public_key())})
        upload = _call(stack, "POST", "/releases", json=body).json()
        # Given a release not uploaded yet: publishing it is a conflict
        assert _call(stack, "POST", "/releases/3.0.0/linux-x86_64/complete").status_code == 409
        # When its bytes are uploaded by the presigned link, Then it publishes
        put = httpx.put(upload["upload_url"], content=artifact.read_bytes(), headers=upload["upload_headers"])
        assert put.status_code == 200
        assert _call(stack, "POST", "/releases/3.0.0/linux-x86_64/complete").json()["status"] == "published"
        # And announcing the same version again with other bytes is a conflict
        other = body | {"sha256": "0" * 64}
        assert _call(stack, "POST", "/releases", json=other).status_code in (400, 409)
    # When the dev stack restarts on the same data folder
    with _stack(tmp_path / "data") as stack:
        link = _call(stack, "GET", "/releases").json()["items"]
        assert [(r["version"], r["status"]) for r in link] == [("3.0.0", "published")]
        token = _call(stack, "POST", "/registration-tokens", json={"max_uses": 1}).json()["token"]
        download = httpx.get(
            f"{stack.url}/v1/agent/releases/latest",
            params={"platform": "linux-x86_64"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        # Then the artifact is still there, byte for byte, through a presigned link
        assert download.status_code == 200, download.text
        assert httpx.get(download.json()["download_url"], timeout=30).content == artifact.read_bytes()
        # And without a valid token nothing is handed out
        refused = httpx.get(
            f"{stack.url}/v1/agent/releases/latest", params={"platform": "linux-x86_64"}, timeout=30
        )
        assert refused.status_code == 401
