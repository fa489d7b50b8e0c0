"""What the release use cases need from storage: the table (items) and the bucket (objects)."""

from __future__ import annotations

from typing import Protocol

from fleetlink.core.audit import AuditRecord
from fleetlink.core.releases.model import Release, ReleaseKey


class ReleaseRepository(Protocol):
    def get_key(self) -> ReleaseKey | None:
        """The current release key (read consistently)."""

    def put_key(self, key: ReleaseKey, replacing: str | None, audit: AuditRecord) -> bool:
        """Write the key if the current one is still ``replacing`` (None: none yet), with its audit
        entry in the same transaction; False if it moved (nothing written)."""

    def get(self, version: str, platform: str) -> Release | None:
        """One release (read consistently)."""

    def create(self, release: Release, audit: AuditRecord) -> bool:
        """Put a new release and its audit entry (one transaction); False if that (version, platform)
        exists (nothing written)."""

    def publish(self, release: Release, audit: AuditRecord) -> bool:
        """Write ``release`` (published) over its uploading self, with its audit entry (one
        transaction); False if it is absent or no longer uploading (nothing written)."""

    def list(self, platform: str | None) -> list[Release]:
        """Every release (of one platform), newest version first."""


class ReleaseBucket(Protocol):
    def upload_url(self, object_key: str, size: int, expires_s: int) -> tuple[str, dict[str, str]]:
        """A presigned PUT of exactly ``size`` bytes to one object, and the headers it must carry."""

    def download_url(self, object_key: str, expires_s: int) -> str:
        """A presigned GET of one object."""

    def object_size(self, object_key: str) -> int | None:
        """The object's size, None if absent."""
