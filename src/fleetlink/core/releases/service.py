"""Release use cases: the release key (changed only with the old key's consent), announcing and
publishing signed artifacts, download links for nodes."""

from __future__ import annotations

from fleetlink.core.clock import Clock
from fleetlink.core.errors import Conflict, InvalidInput, NotFound
from fleetlink.core.releases.model import (
    AnnounceRelease,
    Release,
    ReleaseDownload,
    ReleaseKey,
    ReleaseStatus,
    ReleaseUpload,
    SetReleaseKey,
)
from fleetlink.core.releases.ports import ReleaseBucket, ReleaseRepository
from fleetlink.release import signing
from fleetlink.release.manifest import artifact_file_name, version_key

#: Presigned links live this long: long enough to move an artifact, short enough to be useless later.
UPLOAD_LINK_S = 900
DOWNLOAD_LINK_S = 600
LATEST = "latest"


def object_key(version: str, platform: str) -> str:
    return f"releases/{version}/{artifact_file_name(version, platform)}"


class ReleaseService:
    def __init__(self, releases: ReleaseRepository, bucket: ReleaseBucket, clock: Clock) -> None:
        self._releases = releases
        self._bucket = bucket
        self._clock = clock

    # --- the key ------------------------------------------------------------------------------

    def key(self) -> ReleaseKey:
        key = self._releases.get_key()
        if key is None:
            raise NotFound(
                "no release key yet: `fleetlink release publish --key <file>` sets it", code="no-release-key"
            )
        return key

    def set_key(self, command: SetReleaseKey) -> ReleaseKey:
        """The first key is taken as given; a different key needs the current key's signature over it."""
        try:
            new_key = signing.load_public_pem(command.public_key)
        except signing.ReleaseSignatureError as error:
            raise InvalidInput(str(error), code="invalid-release-key") from None
        new_id = signing.key_id(new_key)
        current = self._releases.get_key()
        if current is not None and current.key_id == new_id:
            return current
        rotation = None
        if current is not None:
            if command.rotation_signature is None:
                raise Conflict(
                    f"release key {current.key_id} is pinned by the fleet: a new key needs its signature "
                    "(`fleetlink release rotate-key --old <file> --new <file>`)",
                    code="release-key-rotation-unsigned",
                )
            try:
                signing.verify_rotation(
                    signing.load_public_pem(current.public_key), new_key, command.rotation_signature
                )
            except signing.ReleaseSignatureError as error:
                raise Conflict(str(error), code="release-key-rotation-invalid") from None
            rotation = command.rotation_signature
        key = ReleaseKey(
            public_key=signing.public_pem(new_key),
            key_id=new_id,
            previous_key_id=current.key_id if current else None,
            rotation_signature=rotation,
            updated_at=self._clock.now_ms(),
        )
        if not self._releases.put_key(key, current.key_id if current else None):
            raise Conflict("the release key changed meanwhile; retry", code="release-key-changed")
        return key

    # --- publishing -----------------------------------------------------------------------------

    def announce(self, command: AnnounceRelease, actor: str) -> ReleaseUpload:
        """Record a signed release (checked against the current key) and hand out its upload link;
        the same announcement again (an interrupted upload) gets a new link."""
        key = self.key()
        try:
            signing.verify_manifest(
                signing.load_public_pem(key.public_key),
                command.version,
                command.platform,
                command.sha256,
                command.size,
                command.signature,
            )
        except signing.ReleaseSignatureError as error:
            raise InvalidInput(str(error), code="release-signature-invalid") from None
        release = Release(
            **command.model_dump(),
            key_id=key.key_id,
            status=ReleaseStatus.UPLOADING,
            created_at=self._clock.now_ms(),
            created_by=actor,
        )
        if not self._releases.create(release):
            existing = self._releases.get(command.version, command.platform)
            same = existing is not None and (existing.sha256, existing.size) == (command.sha256, command.size)
            if existing is None or existing.status is ReleaseStatus.PUBLISHED or not same:
                raise Conflict(
                    f"release {command.version} ({command.platform}) exists: a version is published once",
                    code="release-exists",
                )
            release = existing
        url, headers = self._bucket.upload_url(
            object_key(release.version, release.platform), release.size, UPLOAD_LINK_S
        )
        return ReleaseUpload(
            release=release,
            upload_url=url,
            upload_headers=headers,
            expires_at=self._clock.now_ms() + UPLOAD_LINK_S * 1000,
        )

    def complete(self, version: str, platform: str) -> Release:
        """Publish a release once its artifact is in the bucket with the signed size (idempotent)."""
        release = self._releases.get(version, platform)
        if release is None:
            raise NotFound(f"no release {version} ({platform})", code="no-such-release")
        if release.status is ReleaseStatus.PUBLISHED:
            return release
        size = self._bucket.object_size(object_key(version, platform))
        if size is None:
            raise Conflict(f"release {version} ({platform}) is not uploaded yet", code="release-not-uploaded")
        if size != release.size:
            raise Conflict(
                f"the uploaded artifact has {size} bytes, the signed release {release.size}",
                code="release-size-mismatch",
            )
        published = self._releases.mark_published(version, platform, self._clock.now_ms())
        if published is None:
            raise NotFound(f"no release {version} ({platform})", code="no-such-release")
        return published

    def list(self, platform: str | None) -> list[Release]:
        return self._releases.list(platform)

    def resolve(self, version: str, platform: str) -> Release:
        """A published release; ``latest`` is the highest published version of the platform."""
        if version == LATEST:
            published = [r for r in self._releases.list(platform) if r.status is ReleaseStatus.PUBLISHED]
            if not published:
                raise NotFound(f"no published release for {platform}", code="no-such-release")
            return max(published, key=lambda release: version_key(release.version))
        release = self._releases.get(version, platform)
        if release is None or release.status is not ReleaseStatus.PUBLISHED:
            raise NotFound(f"no published release {version} for {platform}", code="no-such-release")
        return release

    def download(self, version: str, platform: str) -> ReleaseDownload:
        release = self.resolve(version, platform)
        return ReleaseDownload(
            version=release.version,
            platform=release.platform,
            sha256=release.sha256,
            size=release.size,
            signature=release.signature,
            key_id=release.key_id,
            download_url=self._bucket.download_url(
                object_key(release.version, release.platform), DOWNLOAD_LINK_S
            ),
            expires_at=self._clock.now_ms() + DOWNLOAD_LINK_S * 1000,
        )
