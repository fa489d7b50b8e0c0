"""Release use cases: the release key (changed only with the old key's consent), announcing and
publishing signed artifacts, download links for nodes.

Each write that changes something leaves one audit entry in its own transaction: the key set or
rotated (``release_key.set`` / ``release_key.rotate`` on ``release-key``), a release announced
(``release.announce``) and published (``release.publish``) on ``release/<version>/<platform>``.
Entries carry key ids, public keys, digests and sizes, never a signature; a resend that changes
nothing (the same key, the same announcement, an already published release) leaves none.
"""

from __future__ import annotations

from fleetlink.core.audit import AuditRecord, FieldChange, changes_between, created
from fleetlink.core.clock import Clock
from fleetlink.core.copying import copied
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
#: The audit log's resource id of the release key.
RELEASE_KEY_RESOURCE = "release-key"
#: What of a release its audit entries record (its signature stays out: it proves, it is not news).
AUDITED_RELEASE_FIELDS = ("version", "platform", "sha256", "size", "key_id", "status", "published_at")


def release_resource(version: str, platform: str) -> str:
    """The audit log's resource id of one release."""
    return f"release/{version}/{platform}"


def _audited(release: Release | None) -> dict[str, object]:
    return {} if release is None else release.model_dump(mode="json", include=set(AUDITED_RELEASE_FIELDS))


def release_changes(before: Release | None, after: Release) -> dict[str, FieldChange]:
    return changes_between(_audited(before), _audited(after))


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

    def set_key(self, command: SetReleaseKey, actor: str) -> ReleaseKey:
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
        public = ("key_id", "public_key")
        audit = AuditRecord.of(
            actor,
            "release_key.rotate" if current else "release_key.set",
            RELEASE_KEY_RESOURCE,
            key.updated_at,
            changes=changes_between(
                current.model_dump(include=set(public)) if current else {},
                key.model_dump(include=set(public)),
            ),
        )
        if not self._releases.put_key(key, current.key_id if current else None, audit):
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
        audit = AuditRecord.of(
            actor,
            "release.announce",
            release_resource(release.version, release.platform),
            release.created_at,
            changes=created(_audited(release)),
        )
        if not self._releases.create(release, audit):
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

    def complete(self, version: str, platform: str, actor: str) -> Release:
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
        now = self._clock.now_ms()
        published = release.model_copy(update={"status": ReleaseStatus.PUBLISHED, "published_at": now})
        audit = AuditRecord.of(
            actor,
            "release.publish",
            release_resource(version, platform),
            now,
            changes=release_changes(release, published),
        )
        if self._releases.publish(published, audit):
            return published
        current = self._releases.get(version, platform)  # published (or gone) meanwhile
        if current is None:
            raise NotFound(f"no release {version} ({platform})", code="no-such-release")
        if current.status is not ReleaseStatus.PUBLISHED:
            raise Conflict(f"release {version} ({platform}) changed meanwhile; retry", code="release-changed")
        return current

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
        return copied(
            ReleaseDownload,
            release,
            download_url=self._bucket.download_url(
                object_key(release.version, release.platform), DOWNLOAD_LINK_S
            ),
            expires_at=self._clock.now_ms() + DOWNLOAD_LINK_S * 1000,
        )
