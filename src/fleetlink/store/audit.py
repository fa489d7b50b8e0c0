"""The fleet-wide audit log in the table: entries written beside the changes they record, read newest
first by day, by resource, by actor or action.

Keys (``store/keys.py``): an entry lives in its UTC day's partition, one of ``AUDIT_SHARDS`` chosen
by its id (no hot key however busy the operators), sorted by its time-ordered ``aud_`` id; a sparse
gsi1 key lists one resource's entries. Reading the fleet's log queries each shard of a day, newest
first, and merges them; a page visits at most ``DAYS_PER_PAGE`` days and its cursor goes on from
there. Entries carry a TTL (the retention setting), and every read also skips expired ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactWrite
from ulid import ULID

from fleetlink.core.audit import AuditRecord
from fleetlink.core.entities import Page
from fleetlink.store import keys
from fleetlink.store.base import ListIndex, TableItem, attributes_of, entity, index_keys, transaction
from fleetlink.store.conditions import failed_conditions
from fleetlink.store.cursors import FILTERED_PAGE, CursorPaged, invalid_cursor
from fleetlink.store.errors import translates_store_errors
from fleetlink.store.table import LIST_INDEX

#: Day partitions one page reads at most (each: ``AUDIT_SHARDS`` Queries); the cursor goes on.
DAYS_PER_PAGE = 7
DAY_MS = 86_400_000
#: Retention unless configured (``FLEETLINK_AUDIT_RETENTION_DAYS``).
DEFAULT_RETENTION_DAYS = 365
_retention_days = [DEFAULT_RETENTION_DAYS]
_AUDIT_ID = re.compile(r"^aud_[0-9A-HJKMNP-TV-Z]{26}$")


def configure_retention(days: int) -> None:
    """How long entries written from now on are kept (the deps builder sets it from the settings)."""
    if days < 1:
        raise ValueError("audit retention must be at least one day")
    _retention_days[0] = days


class AuditItem(attributes_of(AuditRecord, maps=True), TableItem, discriminator="audit"):  # type: ignore[misc]
    #: one resource's audit entries, newest first
    by_resource: ListIndex[AuditItem] = ListIndex()
    gsi1pk, gsi1sk = index_keys(LIST_INDEX)


def audited_write(audit: AuditRecord, write: Callable[[TransactWrite], object]) -> bool:
    """``write`` and its audit entry in one transaction; False if ``write``'s condition failed."""
    try:
        with transaction() as tx:
            write(tx)
            tx.save(audit_item(audit))
    except TransactWriteError as error:
        if failed_conditions(error):
            return False
        raise
    return True


def audit_item(audit: AuditRecord) -> AuditItem:
    """The item to Put in the transaction of the change ``audit`` records (one per change)."""
    pk, sk = keys.audit_keys(audit.audit_id, audit.at)
    return AuditItem(
        pk,
        sk,
        gsi1pk=keys.audit_resource_pk(audit.target_id),
        gsi1sk=audit.audit_id,
        ttl=audit.at // 1000 + _retention_days[0] * 86_400,
        **audit.model_dump(mode="json"),
    )


@dataclass(frozen=True)
class AuditFilter:
    """What to list: all of it, or by actor, resource (target id), action, time range [since, until]."""

    actor: str | None = None
    resource: str | None = None
    action: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def scope(self) -> str:
        return f"audit|{self.actor}|{self.resource}|{self.action}|{self.since_ms}|{self.until_ms}"


def _bound(at_ms: int, *, high: bool) -> str:
    """The least (or greatest) ``aud_`` id of a millisecond."""
    fill = b"\xff" if high else b"\x00"
    return f"aud_{ULID.from_bytes(max(at_ms, 0).to_bytes(6, 'big') + fill * 10)}"


@translates_store_errors
class DynamoAuditLog(CursorPaged):
    def record(self, audit: AuditRecord) -> None:
        """An entry on its own (one PutItem): an attempt that changed nothing, e.g. refused for its role."""
        audit_item(audit).save()

    def entries(
        self, query: AuditFilter, *, limit: int, cursor: str | None, now_ms: int
    ) -> Page[AuditRecord]:
        """Entries matching ``query``, newest first, ``limit`` at most (a page may be short: follow
        its cursor)."""
        oldest = max(now_ms - _retention_days[0] * DAY_MS, query.since_ms or 0)
        newest = min(now_ms, query.until_ms) if query.until_ms is not None else now_ms
        before = _bound(newest, high=True) + "~"  # after every id of that millisecond
        if cursor is not None:
            before = self._opened(query, cursor)
        low = _bound(oldest, high=False)
        if before <= low:  # the range ends before the retention starts: nothing to read (and a
            return Page[AuditRecord](items=[], cursor=None)  # BETWEEN needs low <= high)
        condition = self._filter(query, now_ms)
        # DynamoDB's Limit applies before the filter: read more a page when the filter is selective
        page = FILTERED_PAGE if query.actor is not None or query.action is not None else limit + 1
        if query.resource is not None:
            found, more = self._by_resource(query.resource, low, before, condition, limit, page)
        else:
            found, more = self._by_days(low, before, oldest, condition, limit, page)
        records = [entity(AuditRecord, item) for item in found]
        next_cursor = self._cursors.seal(query.scope(), {"b": more}) if more else None
        return Page[AuditRecord](items=records, cursor=next_cursor)

    def _opened(self, query: AuditFilter, cursor: str) -> str:
        before = self._cursors.open(query.scope(), cursor).get("b")
        if not isinstance(before, str) or not _AUDIT_ID.match(before):
            raise invalid_cursor()
        return before

    @staticmethod
    def _filter(query: AuditFilter, now_ms: int) -> Condition:
        condition: Condition = AuditItem.ttl > now_ms // 1000
        if query.actor is not None:
            condition &= AuditItem.actor == query.actor
        if query.action is not None:
            condition &= AuditItem.action == query.action
        return condition

    @staticmethod
    def _by_resource(
        resource: str, low: str, before: str, condition: Condition, limit: int, page: int
    ) -> tuple[list[AuditItem], str | None]:
        results = AuditItem.by_resource.query(
            keys.audit_resource_pk(resource),
            AuditItem.gsi1sk.between(low, before),
            filter_condition=condition,
            scan_index_forward=False,
            limit=limit + 1,
            page_size=page,
        )
        found = [item for item in results if item.audit_id < before]
        return found[:limit], found[limit - 1].audit_id if len(found) > limit else None

    @staticmethod
    def _by_days(
        low: str, before: str, oldest_ms: int, condition: Condition, limit: int, page: int
    ) -> tuple[list[AuditItem], str | None]:
        found: list[AuditItem] = []
        day_start = _day_start(_ms_of(before))
        for _ in range(DAYS_PER_PAGE):
            need = limit - len(found)
            day = keys.audit_day(day_start)
            merged: list[AuditItem] = []
            for shard in range(keys.AUDIT_SHARDS):
                merged += AuditItem.query(
                    keys.audit_pk(day, shard),
                    AuditItem.sk.between(low, before),
                    filter_condition=condition,
                    scan_index_forward=False,
                    limit=need + 1,
                    page_size=page,
                )
            merged = sorted(
                (item for item in merged if item.audit_id < before), key=lambda i: i.audit_id, reverse=True
            )
            if len(merged) > need:
                found += merged[:need]
                return found, found[-1].audit_id
            found += merged
            if day_start <= oldest_ms:
                return found, None
            before = _bound(day_start - 1, high=True) + "~"
            day_start -= DAY_MS
        # the day budget is spent: go on from the start of the last day read
        return found, _bound(day_start + DAY_MS - 1, high=True)


def _ms_of(audit_id: str) -> int:
    return int.from_bytes(ULID.from_str(audit_id.removeprefix("aud_")[:26]).bytes[:6], "big")


def _day_start(at_ms: int) -> int:
    return at_ms - at_ms % DAY_MS
