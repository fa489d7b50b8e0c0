"""Releases and the release key in the table (the artifacts themselves are in the releases bucket).

Every write is a transaction with its audit entry (``store.audit.audit_item``): 2 WCU for the item
and about 2 for the entry, against 1 for the plain write before; releases are written rarely.
"""

from __future__ import annotations

from pynamodb.expressions.update import Action

from fleetlink.core.audit import AuditRecord
from fleetlink.core.releases.model import Release, ReleaseKey, ReleaseStatus
from fleetlink.release.manifest import version_key
from fleetlink.store import keys
from fleetlink.store.audit import audited_write
from fleetlink.store.base import TableItem, attributes_of, entity
from fleetlink.store.errors import translates_store_errors


class ReleaseKeyItem(attributes_of(ReleaseKey), TableItem, discriminator="release_key"):  # type: ignore[misc]
    """The release key nodes pin (one item)."""


class ReleaseItem(attributes_of(Release), TableItem, discriminator="release"):  # type: ignore[misc]
    """One release of one platform."""


@translates_store_errors
class DynamoReleaseRepository:
    """Get/Put/Update on two fixed partitions: a handful of items, read far more than written."""

    def get_key(self) -> ReleaseKey | None:
        try:
            item = ReleaseKeyItem.get(keys.RELEASE_KEY_PK, keys.SINGLETON_SK, consistent_read=True)
        except ReleaseKeyItem.DoesNotExist:
            return None
        return entity(ReleaseKey, item)

    def put_key(self, key: ReleaseKey, replacing: str | None, audit: AuditRecord) -> bool:
        item = ReleaseKeyItem(keys.RELEASE_KEY_PK, keys.SINGLETON_SK, **key.model_dump())
        condition = (
            ReleaseKeyItem.pk.does_not_exist() if replacing is None else ReleaseKeyItem.key_id == replacing
        )
        return audited_write(audit, lambda tx: tx.save(item, condition=condition))

    def get(self, version: str, platform: str) -> Release | None:
        try:
            item = ReleaseItem.get(keys.RELEASES_PK, keys.release_sk(platform, version), consistent_read=True)
        except ReleaseItem.DoesNotExist:
            return None
        return entity(Release, item)

    def create(self, release: Release, audit: AuditRecord) -> bool:
        item = ReleaseItem(
            keys.RELEASES_PK, keys.release_sk(release.platform, release.version), **release.model_dump()
        )
        return audited_write(audit, lambda tx: tx.save(item, condition=ReleaseItem.pk.does_not_exist()))

    def publish(self, release: Release, audit: AuditRecord) -> bool:
        item = ReleaseItem(keys.RELEASES_PK, keys.release_sk(release.platform, release.version))
        actions: list[Action] = [
            ReleaseItem.status.set(release.status.value),
            ReleaseItem.published_at.set(release.published_at or 0),
        ]
        uploading = ReleaseItem.status == ReleaseStatus.UPLOADING.value
        return audited_write(audit, lambda tx: tx.update(item, actions=actions, condition=uploading))

    def list(self, platform: str | None) -> list[Release]:
        condition = ReleaseItem.sk.startswith(f"{platform}#") if platform else None
        items = [entity(Release, item) for item in ReleaseItem.query(keys.RELEASES_PK, condition)]
        return sorted(
            items, key=lambda release: (version_key(release.version), release.platform), reverse=True
        )
