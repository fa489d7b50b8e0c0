"""Tunnels on the single table: item models and the adapter of the tunnel port.

A tunnel lives in its agent's partition (the desired state is one consistent Query), beside the
guard that keeps (agent, provider, name) unique; a pointer in the tunnel's own partition finds its
agent from the tunnel id, and the tunnel's events live there too. Every change of desired state
moves the agent's ``tunnels_version`` on, in the same transaction, on the presence item the
heartbeat reads anyway.
"""

from __future__ import annotations

import re
from typing import Any

from pynamodb.attributes import UnicodeAttribute, VersionAttribute
from pynamodb.constants import ALL_OLD
from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from fleetlink.core.audit import AuditRecord
from fleetlink.core.entities import Page
from fleetlink.core.errors import Conflict
from fleetlink.core.tunnels.model import EventLevel, Provider, TunnelEvent, TunnelRecord
from fleetlink.store import keys
from fleetlink.store.audit import audit_item, audited_write
from fleetlink.store.base import (
    ListIndex,
    QueueIndex,
    TableItem,
    TaskExecutionsIndex,
    attributes_of,
    entity,
    index_keys,
    transaction,
)
from fleetlink.store.conditions import condition_failed, failed_conditions
from fleetlink.store.cursors import CursorCodec, invalid_cursor, last_key_of, sharded_pages
from fleetlink.store.errors import translates_store_errors
from fleetlink.store.presence import AgentPresenceItem
from fleetlink.store.table import LIST_INDEX, QUEUE_INDEX, TASK_EXECUTIONS_INDEX

# --- items ---------------------------------------------------------------------------------------


class TunnelItem(attributes_of(TunnelRecord), TableItem, discriminator="tunnel"):  # type: ignore[misc]
    #: the fleet's tunnels, sharded by id
    fleet: ListIndex[TunnelItem] = ListIndex()
    gsi1pk, gsi1sk = index_keys(LIST_INDEX)
    version = VersionAttribute()


class TunnelNameItem(TableItem, discriminator="tunnel_name"):
    """Uniqueness guard: one tunnel per (agent, provider, name)."""

    tunnel_id = UnicodeAttribute()


class TunnelRefItem(TableItem, discriminator="tunnel_ref"):
    """Which agent a tunnel id belongs to (immutable)."""

    agent_id = UnicodeAttribute()


class TunnelEventItem(attributes_of(TunnelEvent), TableItem, discriminator="tunnel_event"):  # type: ignore[misc]
    #: every tunnel event of a day, and its error events (sparse), sharded by tunnel
    fleet_events: TaskExecutionsIndex[TunnelEventItem] = TaskExecutionsIndex()
    fleet_errors: QueueIndex[TunnelEventItem] = QueueIndex()
    gsi3pk, gsi3sk = index_keys(TASK_EXECUTIONS_INDEX)
    gsi2pk, gsi2sk = index_keys(QUEUE_INDEX, null=True)


# --- repository ----------------------------------------------------------------------------------

_FLEET_CURSOR = re.compile(r"^\d{13}#evt_[0-9A-HJKMNP-TV-Z]{26}$")


@translates_store_errors
class DynamoTunnelRepository:
    def __init__(self, event_retention_days: int, cursors: CursorCodec | None = None) -> None:
        self._retention_s = event_retention_days * 86_400
        self._cursors = cursors or CursorCodec()

    def create(self, record: TunnelRecord, events: list[TunnelEvent], audit: AuditRecord) -> None:
        """Tunnel, name guard, pointer, the agent's version and the events: all or nothing."""
        guard = TunnelNameItem(
            keys.agent_pk(record.agent_id),
            keys.tunnel_name_sk(record.provider.value, record.name),
            tunnel_id=record.tunnel_id,
        )
        try:
            with transaction() as tx:
                tx.save(guard, condition=TunnelNameItem.pk.does_not_exist(), return_values=ALL_OLD)
                tx.save(_tunnel_item(record, version=None), condition=TunnelItem.pk.does_not_exist())
                tx.save(
                    TunnelRefItem(
                        keys.tunnel_pk(record.tunnel_id), keys.SINGLETON_SK, agent_id=record.agent_id
                    )
                )
                _bump(tx, record.agent_id)
                tx.save(audit_item(audit))
                for event in events:
                    tx.save(self._event_item(event))
        except TransactWriteError as error:
            failed = failed_conditions(error)
            if failed and TunnelNameItem.__name__ not in failed:  # e.g. the agent's presence is gone
                raise Conflict("the agent changed meanwhile; retry", code="concurrent-update") from error
            if failed:
                raise Conflict(
                    f"agent {record.agent_id} has a {record.provider.value} tunnel named {record.name}",
                    code="tunnel-name-taken",
                ) from error
            raise

    def get(self, tunnel_id: str) -> TunnelRecord | None:
        try:
            ref = TunnelRefItem.get(keys.tunnel_pk(tunnel_id), keys.SINGLETON_SK, consistent_read=True)
        except TunnelRefItem.DoesNotExist:
            return None
        return self.get_of_agent(ref.agent_id, tunnel_id)

    def get_of_agent(self, agent_id: str, tunnel_id: str) -> TunnelRecord | None:
        try:
            item = TunnelItem.get(keys.agent_pk(agent_id), keys.tunnel_sk(tunnel_id), consistent_read=True)
        except TunnelItem.DoesNotExist:
            return None
        return _record(item)

    def of_agent(self, agent_id: str) -> list[TunnelRecord]:
        items = TunnelItem.query(
            keys.agent_pk(agent_id),
            TunnelItem.sk.startswith(keys.TUNNEL_PREFIX),
            consistent_read=True,
        )
        return [_record(item) for item in items]

    def replace(
        self, before: TunnelRecord, after: TunnelRecord, events: list[TunnelEvent], audit: AuditRecord
    ) -> bool:
        try:
            with transaction() as tx:
                tx.save(_tunnel_item(after, version=before.version), return_values=ALL_OLD)
                _bump(tx, after.agent_id)
                tx.save(audit_item(audit))
                for event in events:
                    tx.save(self._event_item(event))
        except TransactWriteError as error:
            if failed_conditions(error):
                return False
            raise
        return True

    def delete(self, record: TunnelRecord, audit: AuditRecord) -> bool:
        agent_pk = keys.agent_pk(record.agent_id)

        def removal(tx: TransactWrite) -> None:
            tx.delete(
                TunnelItem(agent_pk, keys.tunnel_sk(record.tunnel_id)),
                condition=TunnelItem.pk.exists(),
                add_version_condition=False,
            )
            tx.delete(TunnelNameItem(agent_pk, keys.tunnel_name_sk(record.provider.value, record.name)))
            tx.delete(TunnelRefItem(keys.tunnel_pk(record.tunnel_id), keys.SINGLETON_SK))
            _bump(tx, record.agent_id)

        return audited_write(audit, removal)

    def report_status(self, before: TunnelRecord, after: TunnelRecord) -> bool:
        """One PutItem conditional on the version read (no transaction, no version move)."""
        try:
            _tunnel_item(after, version=before.version).save()
        except PutError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def list_fleet(
        self, *, provider: Provider | None, enabled: bool | None, limit: int, cursor: str | None
    ) -> Page[TunnelRecord]:
        condition = None
        if provider is not None:
            condition = TunnelItem.provider == provider.value
        if enabled is not None:
            on = TunnelItem.enabled == enabled
            condition = on if condition is None else condition & on
        items, next_cursor = sharded_pages(
            lambda shard, last_key, n: TunnelItem.fleet.query(
                keys.tunnel_list_pk(shard), filter_condition=condition, limit=n, last_evaluated_key=last_key
            ),
            limit,
            self._cursors,
            f"tunnels:provider={provider}:enabled={enabled}",
            cursor,
        )
        return Page[TunnelRecord](items=[_record(item) for item in items], cursor=next_cursor)

    # --- events --------------------------------------------------------------------------------

    def add_events(self, events: list[TunnelEvent]) -> None:
        """BatchWriteItem, 25 a request; PynamoDB resends unprocessed items with backoff."""
        with TunnelEventItem.batch_write() as batch:
            for event in events:
                batch.save(self._event_item(event))

    def events_of(self, tunnel_id: str, *, now_ms: int, limit: int, cursor: str | None) -> Page[TunnelEvent]:
        scope = f"tunnel-events:{tunnel_id}"
        last_key = last_key_of(self._cursors.open(scope, cursor)) if cursor is not None else None
        results = TunnelEventItem.query(
            keys.tunnel_pk(tunnel_id),
            TunnelEventItem.sk.startswith(keys.TUNNEL_EVENT_PREFIX),
            filter_condition=TunnelEventItem.ttl > now_ms // 1000,
            scan_index_forward=False,
            limit=limit,
            last_evaluated_key=last_key,
        )
        items = [_event(item) for item in results]
        last = results.last_evaluated_key
        return Page[TunnelEvent](items=items, cursor=self._cursors.seal(scope, {"k": last}) if last else None)

    def fleet_events(
        self, *, errors_only: bool, since_ms: int, now_ms: int, limit: int, cursor: str | None
    ) -> Page[TunnelEvent]:
        """Newest first over the day partitions from now back to ``since_ms``: each shard's newest
        ``limit`` below the cursor, merged. The cursor is the last answered event's sort key.

        Days older than the events' retention hold nothing (TTL), so ``since_ms`` is raised to it:
        ``since=0`` reads the retained days, not every day since 1970.
        """
        scope = f"tunnel-fleet-events:errors={errors_only}:since={since_ms}"  # as asked: pages agree
        before = self._fleet_position(scope, cursor)
        since_ms = max(since_ms, now_ms - self._retention_s * 1000)
        floor = keys.tunnel_event_fleet_sk(since_ms, "")
        index = TunnelEventItem.fleet_errors if errors_only else TunnelEventItem.fleet_events
        partition = keys.tunnel_errors_pk if errors_only else keys.tunnel_events_pk
        range_key = TunnelEventItem.gsi2sk if errors_only else TunnelEventItem.gsi3sk
        condition = range_key > floor if before is None else range_key.between(floor, before)
        found: dict[str, TunnelEventItem] = {}
        day_ms = int(before[:13]) if before else now_ms
        # Day by day, newest first: once a day leaves `limit` events, older days hold only older ones.
        while len(found) < limit and _day_start(day_ms) + 86_400_000 > since_ms:
            day = keys.tunnel_events_day(day_ms)
            for shard in range(keys.LIST_SHARDS):
                for item in index.query(
                    partition(day, shard),
                    condition,
                    filter_condition=TunnelEventItem.ttl > now_ms // 1000,
                    scan_index_forward=False,
                    limit=limit + 1,
                ):
                    found[keys.tunnel_event_fleet_sk(int(item.created_at), item.event_id)] = item
            found.pop(before or "", None)
            day_ms = _day_start(day_ms) - 1
        page = sorted(found.items(), reverse=True)[:limit]
        next_cursor = self._cursors.seal(scope, {"b": page[-1][0]}) if len(page) == limit else None
        return Page[TunnelEvent](items=[_event(item) for _, item in page], cursor=next_cursor)

    def _fleet_position(self, scope: str, cursor: str | None) -> str | None:
        """The sort key a fleet-events cursor stopped at."""
        if cursor is None:
            return None
        before = self._cursors.open(scope, cursor).get("b")
        if isinstance(before, str) and _FLEET_CURSOR.match(before):
            return before
        raise invalid_cursor()

    def _event_item(self, event: TunnelEvent) -> TunnelEventItem:
        fleet_sk = keys.tunnel_event_fleet_sk(event.created_at, event.event_id)
        day, shard = keys.tunnel_events_day(event.created_at), keys.shard_of(event.tunnel_id)
        item = TunnelEventItem(
            keys.tunnel_pk(event.tunnel_id),
            keys.tunnel_event_sk(event.created_at, event.event_id),
            ttl=event.created_at // 1000 + self._retention_s,
            gsi3pk=keys.tunnel_events_pk(day, shard),
            gsi3sk=fleet_sk,
            **event.model_dump(mode="json"),
        )
        if event.level is EventLevel.ERROR:
            item.gsi2pk, item.gsi2sk = keys.tunnel_errors_pk(day, shard), fleet_sk
        return item


def _bump(tx: Any, agent_id: str) -> None:
    """Move the agent's tunnels version on (the presence item exists from registration on)."""
    presence = AgentPresenceItem(keys.agent_pk(agent_id), keys.AGENT_PRESENCE_SK)
    tx.update(
        presence,
        actions=[AgentPresenceItem.tunnels_version.add(1)],
        condition=AgentPresenceItem.pk.exists(),
    )


def _day_start(at_ms: int) -> int:
    return at_ms - at_ms % 86_400_000


def _tunnel_item(record: TunnelRecord, version: int | None) -> TunnelItem:
    gsi1pk, gsi1sk = keys.tunnel_list_keys(record.tunnel_id)
    values: dict[str, Any] = record.model_dump(mode="json", exclude={"version"})
    item = TunnelItem(
        keys.agent_pk(record.agent_id),
        keys.tunnel_sk(record.tunnel_id),
        gsi1pk=gsi1pk,
        gsi1sk=gsi1sk,
        **values,
    )
    if version is not None:
        item.version = version
    return item


def _record(item: TunnelItem) -> TunnelRecord:
    return entity(TunnelRecord, item)


def _event(item: TunnelEventItem) -> TunnelEvent:
    return entity(TunnelEvent, item)
