"""The node side of releases: signature checks (the bootstrap's verifier and cryptography's), the
reproducible artifact, and side-by-side installation refusing bad input."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from agentdist.build import write_artifact
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetlink.release import manifest, node, signing


def _release(key: Ed25519PrivateKey, artifact: Path, version: str = "1.2.3") -> dict[str, object]:
    signed = signing.sign_artifact(key, version, manifest.this_platform(), artifact)
    return {
        "version": signed.version,
        "platform": signed.platform,
        "sha256": signed.sha256,
        "size": signed.size,
        "signature": signed.signature,
    }


def test_the_bootstrap_verifier_accepts_what_cryptography_signs_and_nothing_else(tmp_path: Path) -> None:
    # Given a release key and a signed artifact
    key = Ed25519PrivateKey.generate()
    pem = signing.public_pem(key.public_key())
    artifact = tmp_path / "a.tar.gz"
    artifact.write_bytes(b"artifact bytes")
    release = _release(key, artifact)
    # When the pure-Python verifier and cryptography check it, Then both accept it
    manifest.check_signature(pem, release)
    signing.verify_manifest(
        key.public_key(), *(release[k] for k in ("version", "platform", "sha256", "size", "signature"))
    )  # type: ignore[arg-type]
    # And a changed field, a flipped signature bit, another key or no signature are refused
    for tampered in (
        {**release, "sha256": hashlib.sha256(b"other").hexdigest()},
        {**release, "version": "1.2.4"},
        {**release, "size": 15},
        {
            **release,
            "signature": base64.b64encode(
                bytes([base64.b64decode(str(release["signature"]))[0] ^ 1])
                + base64.b64decode(str(release["signature"]))[1:]
            ).decode(),
        },
        {**release, "signature": ""},
        {**release, "signature": "not base64!"},
    ):
        with pytest.raises(manifest.ReleaseError, match="not signed by the pinned release key"):
            manifest.check_signature(pem, tampered)
    other = signing.public_pem(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(manifest.ReleaseError):
        manifest.check_signature(other, release)


def test_a_key_change_verifies_only_with_the_old_keys_signature() -> None:
    # Given an old and a new release key
    old, new, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    # When the old key signs the change, Then it verifies; a stranger's signature does not
    signing.verify_rotation(old.public_key(), new.public_key(), signing.sign_rotation(old, new.public_key()))
    with pytest.raises(signing.ReleaseSignatureError):
        signing.verify_rotation(
            old.public_key(), new.public_key(), signing.sign_rotation(stranger, new.public_key())
        )


def test_the_artifact_is_the_same_bytes_twice(tmp_path: Path) -> None:
    # Given the same wheels (written at different times)
    wheels = []
    for name in ("b-1.0-py3-none-any.whl", "a-1.0-py3-none-any.whl"):
        path = tmp_path / name
        path.write_bytes(name.encode() * 100)
        wheels.append(path)
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    # When the artifact is written twice
    one = write_artifact(first, "1.0.0", "linux-x86_64", wheels, 1_700_000_000).read_bytes()
    wheels[0].touch()
    two = write_artifact(second, "1.0.0", "linux-x86_64", list(reversed(wheels)), 1_700_000_000).read_bytes()
    # Then the bytes are equal, entries sorted, and its SHA-256 is written next to it
    assert one == two
    with tarfile.open(fileobj=io.BytesIO(one)) as archive:
        names = archive.getnames()
    assert names == sorted(names)
    assert (first / "fleetlink-agent-1.0.0-linux-x86_64.tar.gz.sha256").read_text().split()[
        0
    ] == hashlib.sha256(one).hexdigest()


def _tarball(path: Path, entries: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_an_artifact_with_an_escaping_entry_is_refused(tmp_path: Path) -> None:
    # Given a signed artifact that writes outside its directory
    artifact = _tarball(tmp_path / "evil.tar.gz", {"../../escape": b"x"})
    # When it is unpacked, Then it is refused and nothing escapes
    with pytest.raises(manifest.ReleaseError, match="unsafe entry"):
        node.unpack(artifact, tmp_path / "into")
    assert not (tmp_path.parent / "escape").exists()


def test_a_release_for_another_platform_is_refused_before_anything_is_installed(tmp_path: Path) -> None:
    # Given an unpacked release for the other platform
    other = "linux-aarch64" if manifest.this_platform() == "linux-x86_64" else "linux-x86_64"
    root = tmp_path / "rel"
    (root / "wheels").mkdir(parents=True)
    (root / node.RELEASE_FILE).write_text(json.dumps({"version": "1.0.0", "platform": other}))
    # When it is installed, Then it is refused and no version directory exists
    with pytest.raises(manifest.ReleaseError, match="is for"):
        node.install_version(root, tmp_path / "prefix")
    assert not (tmp_path / "prefix" / "versions").exists()


def test_a_download_cut_short_or_altered_leaves_nothing(tmp_path: Path) -> None:
    # Given a signed manifest and a source that serves fewer (or other) bytes
    key = Ed25519PrivateKey.generate()
    good = tmp_path / "good"
    good.write_bytes(b"0123456789" * 100)
    release = _release(key, good)
    cut = tmp_path / "cut"
    cut.write_bytes(good.read_bytes()[:500])
    other = tmp_path / "other"
    other.write_bytes(b"x" * 1000)
    for source in (cut, other):
        destination = tmp_path / "downloads" / "a.tar.gz"
        # When it is downloaded, Then it is refused and no file (partial or whole) remains
        with pytest.raises(manifest.ReleaseError, match="cut short or tampered"):
            manifest.download(source.as_uri(), destination, release)
        assert list((tmp_path / "downloads").iterdir()) == []


def test_no_space_is_refused_before_writing(tmp_path: Path) -> None:
    # Given a release larger than the free space
    release = {"version": "1.0.0", "platform": "linux-x86_64", "sha256": "0" * 64, "size": 1 << 62}
    # When it is downloaded, Then the disk check refuses it
    with pytest.raises(manifest.ReleaseError, match="not enough disk space"):
        manifest.download("file:///dev/null", tmp_path / "d" / "a.tar.gz", release)


def test_activate_keeps_the_previous_version_and_prune_keeps_both(tmp_path: Path) -> None:
    # Given three installed versions
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        (tmp_path / "versions" / version).mkdir(parents=True)
        (tmp_path / "versions" / version / node.INSTALLED_MARKER).write_text(version)
    (tmp_path / "versions" / ".1.3.0.partial").mkdir()
    # When two are activated in turn and the rest pruned
    node.activate(tmp_path, "1.0.0")
    assert node.activate(tmp_path, "1.1.0") == "1.0.0"
    node.prune(tmp_path)
    # Then current and previous remain, the rest (and an interrupted install) are gone
    assert (node.current_version(tmp_path), node.previous_version(tmp_path)) == ("1.1.0", "1.0.0")
    assert sorted(path.name for path in (tmp_path / "versions").iterdir()) == ["1.0.0", "1.1.0"]
    with pytest.raises(manifest.ReleaseError, match="not installed"):
        node.activate(tmp_path, "9.9.9")


def test_a_pinned_key_is_not_replaced_by_a_re_run(tmp_path: Path) -> None:
    # Given a node that pinned a key
    first = signing.public_pem(Ed25519PrivateKey.generate().public_key())
    node.pin_key(tmp_path, first)
    # When the installer runs again with the same key, Then it passes; with another, it is refused
    assert node.pin_key(tmp_path, first).strip() == first.strip()
    with pytest.raises(manifest.ReleaseError, match="pinned release key"):
        node.pin_key(tmp_path, signing.public_pem(Ed25519PrivateKey.generate().public_key()))


def test_versions_sort_by_number() -> None:
    assert sorted(["0.10.0", "0.2.0", "0.2.0rc1", "1.0"], key=manifest.version_key) == [
        "0.2.0rc1",
        "0.2.0",
        "0.10.0",
        "1.0",
    ]
